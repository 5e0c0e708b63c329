// Package share lays out the shared store every node mounts at the same path
// (home/<user>, jobs/<id>) and creates directories and files beneath its root
// without following symlinks, so a user cannot point the agent (root) at
// another user's files.
package share

import (
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Home is a user's home directory, relative to the share's root.
func Home(user string) string { return "home/" + user }

// Notebooks is a user's notebook directory, relative to the share's root;
// interactive sessions link it at ~/notebooks/remote.
func Notebooks(user string) string { return "notebooks/" + user }

// JobDir is a job's directory (default working directory, logs), relative
// to the share's root.
func JobDir(id int64) string { return "jobs/" + strconv.FormatInt(id, 10) }

// Log is the combined stdout and stderr of one attempt, relative to the
// share's root.
func Log(id int64, attempt int) string {
	return fmt.Sprintf("%s/attempt-%d.log", JobDir(id), attempt)
}

// MkdirAll creates rel (a clean relative path) beneath root, every missing
// component owned by uid:gid with mode perm (uid < 0 leaves ownership alone).
// No component may be a symlink; an existing one is an error.
func MkdirAll(root, rel string, uid, gid int, perm os.FileMode) error {
	fd, err := walk(root, rel, true, uid, gid, perm)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// OpenFile opens rel beneath root for writing (created with mode perm owned
// by uid:gid when missing, appended to when present), refusing symlinks in
// any component.
func OpenFile(root, rel string, uid, gid int, perm os.FileMode) (*os.File, error) {
	dir, name := path.Split(rel)
	dfd, err := walk(root, strings.TrimSuffix(dir, "/"), false, -1, -1, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return nil, fmt.Errorf("open %s in the share: %w", rel, err)
	}
	if uid >= 0 {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("chown %s in the share: %w", rel, err)
		}
	}
	return os.NewFile(uintptr(fd), path.Join(root, rel)), nil
}

// Symlink creates the symlink rel -> target beneath root, owned by uid:gid,
// unless something already exists at rel (a user may have replaced it; their
// choice is kept). The parent of rel is reached without following symlinks.
func Symlink(root, rel, target string, uid, gid int) error {
	dir, name := path.Split(rel)
	dfd, err := walk(root, strings.TrimSuffix(dir, "/"), false, -1, -1, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Symlinkat(target, dfd, name); err != nil {
		if err == unix.EEXIST {
			return nil
		}
		return fmt.Errorf("link %s in the share: %w", rel, err)
	}
	if uid >= 0 {
		if err := unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s in the share: %w", rel, err)
		}
	}
	return nil
}

func walk(root, rel string, create bool, uid, gid int, perm os.FileMode) (int, error) {
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open share root %s: %w", root, err)
	}
	if rel == "" || rel == "." {
		return fd, nil
	}
	if path.IsAbs(rel) || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == ".." {
		unix.Close(fd)
		return -1, fmt.Errorf("path %q is not a clean relative path", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		next, err := unix.Openat(fd, part, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			if err = unix.Mkdirat(fd, part, uint32(perm)); err != nil && err != unix.EEXIST {
				unix.Close(fd)
				return -1, fmt.Errorf("create %s in the share: %w", rel, err)
			}
			next, err = unix.Openat(fd, part, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil && uid >= 0 {
				if err = unix.Fchown(next, uid, gid); err == nil {
					err = unix.Fchmod(next, uint32(perm))
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			if err == unix.ELOOP || err == unix.ENOTDIR {
				return -1, fmt.Errorf("%s in the share: %q is a symlink or not a directory", rel, part)
			}
			return -1, fmt.Errorf("%s in the share: %w", rel, err)
		}
		fd = next
	}
	return fd, nil
}
