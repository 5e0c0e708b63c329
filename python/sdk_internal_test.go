package python

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestArchive: the archive holds every file of the SDK's tree that pip
// needs, and nothing else, under dspool-VERSION/, and its bytes are the
// same each time it is made.
func TestArchive(t *testing.T) {
	a, err := archive()
	if err != nil {
		t.Fatal(err)
	}
	b, err := archive()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same tree differ")
	}
	gz, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	top := "dspool-" + Version() + "/"
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h.Name, top) || !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("entry %s: modified %s, owner %d:%d; want it under %s, dated %s, root's", h.Name, h.ModTime, h.Uid, h.Gid, top, epoch)
		}
		if h.Typeflag == tar.TypeReg {
			got = append(got, strings.TrimPrefix(h.Name, top))
		}
	}
	// What pip needs: the project, its backend, and every module of the
	// package on disk (a module the embed pattern missed fails here).
	want := []string{"README.md", "build_backend/dspool_build.py", "pyproject.toml"}
	err = filepath.WalkDir("dspool", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".py") {
			want = append(want, filepath.ToSlash(path))
		}
		if err == nil && d.IsDir() && d.Name() == "__pycache__" {
			return fs.SkipDir
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the archive holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat("dspool/_version.py"); err != nil || Version() == "" {
		t.Errorf("no version: %v", err)
	}
}
