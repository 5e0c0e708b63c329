// Package atomicfile replaces a file whole or not at all: the contents go to
// a new file of a random name beside it (O_EXCL: no one's link is followed),
// with its mode set before anything is written, synced, then renamed over
// the old one (a link there is replaced, not followed), and the rename is
// made durable. It knows nothing of what it writes.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with b, mode perm.
func Write(path string, b []byte, perm os.FileMode) error {
	f, err := New(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Commit()
}

// File is the replacement of a file, being written: Commit puts it in
// place, Abort drops it. Its Name is the temporary file's, which the caller
// may read back (to check it) before committing.
type File struct {
	*os.File
	path string
	done bool
}

// New starts the replacement of path, with mode perm.
func New(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit syncs the file, renames it over the path and makes the rename
// durable. On an error the temporary file is removed.
func (f *File) Commit() error {
	if f.done {
		return os.ErrClosed
	}
	f.done = true
	tmp := f.Name()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(f.path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Abort removes the temporary file, unless Commit came first.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}
