// Package share lays out the shared store every node mounts at the same path
// (home/<user>, jobs/<id>, notebooks/<user>) and is the only way the control
// plane and the agents, which run as root, touch files beneath it.
//
// Users write the share, so everything beneath its root is hostile input:
// this package never follows a symlink at any component of a path, never
// opens anything but a regular file (a FIFO, a device or a socket is refused
// before it is opened, so nothing is waited on), and uses a file only when
// it belongs to the expected account and has one link. With As, the kernel
// also checks each access with the user's own rights. It must never be
// given a path outside the share's root, and never run a user's code.
package share

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
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

// ErrUnsafe is wrapped by every refusal of something a user could have
// planted: a symlink at any component, anything but a regular file, a file
// of another account, or one with more than one link.
var ErrUnsafe = errors.New("refused")

// Owner is the account a file beneath the share belongs to.
type Owner struct{ UID, GID int }

// Self is the account of this process.
func Self() Owner { return Owner{os.Geteuid(), os.Getegid()} }

// MkdirAll creates rel (a clean relative path) beneath root, every missing
// component owned by o with mode perm. No component may be a symlink or
// anything but a directory.
func MkdirAll(root, rel string, o Owner, perm os.FileMode) error {
	fd, err := walk(root, rel, true, o, perm)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// Open opens the regular file rel beneath root for reading. It must belong
// to o.UID and have one link; nothing else is opened.
func Open(root, rel string, o Owner) (*os.File, error) {
	rfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	pfd, err := openPath(rfd, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	if err := check(pfd, rel, o); err != nil {
		return nil, err
	}
	return reopen(pfd, rel, unix.O_RDONLY, root)
}

// OpenReadable opens the regular file rel beneath root for reading,
// whoever owns it (an image a team shares): call it inside As, so that the
// kernel checks the user's right to read it. No component may be a
// symlink, and nothing but a regular file is opened.
func OpenReadable(root, rel string) (*os.File, error) {
	rfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	pfd, err := openPath(rfd, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, fmt.Errorf("stat %s in the share: %w", rel, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return nil, fmt.Errorf("%w: %s in the share is a symlink, which is not followed", ErrUnsafe, rel)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("%w: %s in the share is a %s, not a regular file", ErrUnsafe, rel, kind(st.Mode))
	}
	return reopen(pfd, rel, unix.O_RDONLY, root)
}

// OpenFile opens rel beneath root for appending, creating it with mode perm
// and owner o when missing. An existing rel must be a regular file of o.UID
// with one link.
func OpenFile(root, rel string, o Owner, perm os.FileMode) (*os.File, error) {
	dir, name := path.Split(rel)
	dfd, err := walk(root, strings.TrimSuffix(dir, "/"), false, o, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, uint32(perm))
	switch {
	case err == nil:
		if err := chown(fd, o); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("chown %s in the share: %w", rel, err)
		}
		return os.NewFile(uintptr(fd), path.Join(root, rel)), nil
	case err != unix.EEXIST:
		return nil, fmt.Errorf("create %s in the share: %w", rel, err)
	}
	pfd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in the share: %w", rel, err)
	}
	defer unix.Close(pfd)
	if err := check(pfd, rel, o); err != nil {
		return nil, err
	}
	return reopen(pfd, rel, unix.O_WRONLY|unix.O_APPEND, root)
}

// Symlink creates the symlink rel -> target beneath root, unless something
// already exists at rel (a user may have replaced it; their choice is kept).
// The parent of rel is reached without following symlinks. The link is not
// chowned: made as its user (As), it is theirs already, and a network share
// may not chown a link at all (sshfs follows it, or hangs).
func Symlink(root, rel, target string) error {
	dir, name := path.Split(rel)
	dfd, err := walk(root, strings.TrimSuffix(dir, "/"), false, Owner{}, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Symlinkat(target, dfd, name); err != nil && err != unix.EEXIST {
		return fmt.Errorf("link %s in the share: %w", rel, err)
	}
	return nil
}

// check refuses what fd (an O_PATH handle) is unless it is a regular file
// of o.UID with one link.
func check(fd int, rel string, o Owner) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s in the share: %w", rel, err)
	}
	why := ""
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		why = "is a symlink, which is not followed"
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		why = "is a " + kind(st.Mode) + ", not a regular file"
	case int(st.Uid) != o.UID:
		why = fmt.Sprintf("belongs to uid %d, not %d", st.Uid, o.UID)
	case st.Nlink != 1:
		why = fmt.Sprintf("has %d hard links, not 1", st.Nlink)
	default:
		return nil
	}
	return fmt.Errorf("%w: %s in the share %s", ErrUnsafe, rel, why)
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "special file"
}

// reopen opens the file an O_PATH handle names, checked already, with
// flags: through the handle, so no one can swap what is opened. O_NONBLOCK
// stays: it changes nothing for a regular file.
func reopen(pfd int, rel string, flags int, root string) (*os.File, error) {
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), flags|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in the share: %w", rel, err)
	}
	return os.NewFile(uintptr(fd), path.Join(root, rel)), nil
}

func chown(fd int, o Owner) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if int(st.Uid) == o.UID && int(st.Gid) == o.GID {
		return nil
	}
	return unix.Fchown(fd, o.UID, o.GID)
}

func openRoot(root string) (int, error) {
	// The root itself is the operator's, and may be a link to the mount.
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open share root %s: %w", root, err)
	}
	return fd, nil
}

func cleanRel(rel string) error {
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("path %q is not a clean relative path", rel)
	}
	return nil
}

// openPath returns an O_PATH handle of rel beneath the directory rfd,
// following no symlink at any component (the last one included: a
// symlink there is returned as itself, for check to refuse).
func openPath(rfd int, rel string) (int, error) {
	if err := cleanRel(rel); err != nil {
		return -1, err
	}
	fd, err := unix.Openat2(rfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch err {
	case nil:
		return fd, nil
	case unix.ELOOP:
		return -1, fmt.Errorf("%w: %s in the share has a symlink in its path, which is not followed", ErrUnsafe, rel)
	case unix.ENOSYS, unix.EPERM:
		// No openat2 (Linux < 5.6, or a seccomp filter): walk.
	default:
		return -1, fmt.Errorf("open %s in the share: %w", rel, &os.PathError{Op: "open", Path: rel, Err: err})
	}
	dir, name := path.Split(rel)
	dfd := rfd
	if dir != "" {
		if dfd, err = walkFrom(rfd, strings.TrimSuffix(dir, "/"), false, Owner{}, 0); err != nil {
			return -1, err
		}
		defer unix.Close(dfd)
	}
	fd, err = unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s in the share: %w", rel, &os.PathError{Op: "open", Path: rel, Err: err})
	}
	return fd, nil
}

func walk(root, rel string, create bool, o Owner, perm os.FileMode) (int, error) {
	fd, err := openRoot(root)
	if err != nil {
		return -1, err
	}
	if rel == "" || rel == "." {
		return fd, nil
	}
	defer unix.Close(fd)
	return walkFrom(fd, rel, create, o, perm)
}

// walkFrom opens the directory rel beneath fd one component at a time,
// never following a symlink, creating missing ones (owned by o) if create.
// Existing directories are opened O_PATH: passing through a user's
// directory needs no right to read it, so a node whose root is squashed
// (nobody on the share) reaches what the control plane made for it.
func walkFrom(fd int, rel string, create bool, o Owner, perm os.FileMode) (int, error) {
	if err := cleanRel(rel); err != nil {
		return -1, err
	}
	const dirFlags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := unix.Dup(fd)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	for _, part := range strings.Split(rel, "/") {
		next, err := unix.Openat(fd, part, dirFlags|unix.O_PATH, 0)
		if err == unix.ENOENT && create {
			if next, err = mkdirOwned(fd, part, o, perm); err != nil && next == -2 {
				unix.Close(fd)
				return -1, fmt.Errorf("create %s in the share: %w", rel, err)
			}
		}
		unix.Close(fd)
		if err != nil {
			if err == unix.ELOOP || err == unix.ENOTDIR {
				return -1, fmt.Errorf("%w: %s in the share: %q is a symlink or not a directory", ErrUnsafe, rel, part)
			}
			return -1, fmt.Errorf("%s in the share: %w", rel, err)
		}
		fd = next
	}
	return fd, nil
}

// mkdirOwned makes the directory name beneath fd, o's with mode perm, and
// opens it; another's directory made meanwhile is opened instead. One made
// for another owner than this process appears only once it is theirs: it
// is made under a name of its own, handed over, and renamed into place, so
// that no one finds it this process's in between (a user's job directory
// that the control plane, reading a log as the user, finds root's refuses
// it). A failure to make it returns -2 with the error.
func mkdirOwned(fd int, name string, o Owner, perm os.FileMode) (int, error) {
	const dirFlags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	inPlace := func() (int, error) {
		err := unix.Mkdirat(fd, name, uint32(perm))
		if err != nil && err != unix.EEXIST {
			return -2, err
		}
		if err == unix.EEXIST {
			return unix.Openat(fd, name, dirFlags|unix.O_PATH, 0)
		}
		next, err := unix.Openat(fd, name, dirFlags|unix.O_RDONLY, 0)
		if err == nil {
			// Made here: ours to hand over.
			if err = chown(next, o); err == nil {
				err = unix.Fchmod(next, uint32(perm))
			}
		}
		return next, err
	}
	if o == Self() {
		return inPlace()
	}
	b := make([]byte, 6)
	rand.Read(b)
	tmp := ".dspool-new-" + hex.EncodeToString(b)
	if err := unix.Mkdirat(fd, tmp, 0o700); err != nil {
		return inPlace()
	}
	next, err := unix.Openat(fd, tmp, dirFlags|unix.O_RDONLY, 0)
	if err == nil {
		if err = chown(next, o); err == nil {
			err = unix.Fchmod(next, uint32(perm))
		}
	}
	if err == nil {
		switch err = unix.Renameat2(fd, tmp, fd, name, unix.RENAME_NOREPLACE); err {
		case nil:
			return next, nil
		case unix.EEXIST:
			unix.Close(next)
			_ = unix.Unlinkat(fd, tmp, unix.AT_REMOVEDIR)
			return unix.Openat(fd, name, dirFlags|unix.O_PATH, 0)
		}
	}
	// A file system that cannot rename without replacing (or hand the
	// directory over under its own name): made in place, as there is no
	// better.
	if next >= 0 {
		unix.Close(next)
	}
	_ = unix.Unlinkat(fd, tmp, unix.AT_REMOVEDIR)
	return inPlace()
}

// UserDir makes a user's directory rel (home/ann, jobs/7) beneath root when
// missing: its parents are this process's (root's), rel is o's, with mode
// perm. Where root is squashed on the share this fails for a missing rel
// with a permission error: the control plane, which sees the share with
// root's rights, makes them before it sends work.
//
// A rel that is this process's own is handed to o: it was made here, by
// this or another process (the control plane and the agent make job
// directories at about the same time), and not handed over yet, or a crash
// came in between. Its parents are root's, so no user could have made it.
func UserDir(root, rel string, o Owner, perm os.FileMode) error {
	if err := MkdirAll(root, path.Dir(rel), Self(), 0o755); err != nil {
		return err
	}
	fd, err := walk(root, rel, true, o, perm)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	self := Self()
	if o == self || int(st.Uid) != self.UID {
		return nil
	}
	dfd, err := unix.Openat(fd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hand %s in the share over: %w", rel, err)
	}
	defer unix.Close(dfd)
	if err := chown(dfd, o); err != nil {
		return fmt.Errorf("hand %s in the share over: %w", rel, err)
	}
	return unix.Fchmod(dfd, uint32(perm))
}

// WriteLog appends line to the log rel in the job directory dir (made, with
// its parents jobs/ root's, when missing), as o: what the control plane and
// the agents have to say about an attempt that could not start.
func WriteLog(root, dir, rel string, o Owner, line string) error {
	if err := UserDir(root, dir, o, 0o750); err != nil {
		return err
	}
	return As(o.UID, o.GID, func() error {
		f, err := OpenFile(root, rel, o, 0o640)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
