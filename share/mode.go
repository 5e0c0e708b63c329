package share

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode is what root on one machine may do on its mount of the share.
type Mode string

const (
	// ModeOwners: root may make a directory and hand it to a user (a local
	// disk, NFS with no_root_squash, sshfs as root). The agent makes homes
	// and job directories it finds missing.
	ModeOwners Mode = "owners"
	// ModeSquashed: root is nobody on the share, users are themselves (NFS
	// with root_squash, its default). The control plane, which sees the
	// share with root's rights, makes homes and job directories before
	// work is sent; the node acts only as the user, inside them.
	ModeSquashed Mode = "root-squashed"
)

// Top-level directories of the share, made by the control plane, root's.
var topDirs = []string{"home", "jobs", "notebooks"}

// ProbeDir is a directory anyone may create in (sticky, as /tmp), made by
// the control plane, where a node checks that a file made as a user is
// that user's.
const ProbeDir = ".dspool-probe"

// probeUID is the account a probe acts as: not 65534, the id a squashing
// server gives root, so that "made as the user" and "made as nobody" differ.
const probeUID, probeGID = 65533, 65533

// ErrNoOwners is wrapped by Probe's error for a share where files do not
// keep the account that made them: users' files could not be kept apart.
var ErrNoOwners = errors.New("the share keeps no owners")

// Layout makes the share's top directories and its probe directory at
// root, when missing. The control plane calls it at start.
func Layout(root string) error {
	for _, d := range topDirs {
		if err := MkdirAll(root, d, Self(), 0o755); err != nil {
			return err
		}
	}
	fd, err := walk(root, ProbeDir, true, Self(), 0o1777)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&0o7777 != 0o1777 {
		// Made by an older version, or the umask took bits: a probe
		// needs everyone to be able to create there, sticky.
		return unix.Fchmodat(unix.AT_FDCWD, path.Join(root, ProbeDir), 0o1777, 0)
	}
	return nil
}

// Probe finds what root on this machine may do on the share at root:
// make a user's directory (ModeOwners), or only act as the user
// (ModeSquashed). Either way a user must reach the share, and a file a
// user makes there must be theirs, or be handed to them as dspool hands a
// log: a share that keeps no owners (SMB mounted with uid=, sshfs to an
// account that is not root, or with default_permissions) is an error
// wrapping ErrNoOwners; one users cannot reach (a FUSE mount without
// allow_other), or where nothing can be created (read-only), is an error
// too.
func Probe(root string) (Mode, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := ".probe-" + hex.EncodeToString(b)
	o := Owner{probeUID, probeGID}
	mode, err := probeRoot(root, name, o)
	if err != nil {
		return "", err
	}
	// The kernel lets root's fsuid through to a FUSE mount of root's own,
	// but not the user's processes: read the mount's options.
	if onlyForItsOwner(root) {
		return "", fmt.Errorf("users cannot reach the share at %s: it is a FUSE mount (sshfs) without -o allow_other, which only the account that mounted it may use; mount it with -o allow_other", root)
	}
	// As a user: reach the share, then make a file, handed over if need be.
	err = As(probeUID, probeGID, func() error {
		fd, err := walk(root, ProbeDir, false, Owner{}, 0)
		if err != nil {
			return fmt.Errorf("users cannot reach the share at %s (%w): a FUSE mount (sshfs) needs -o allow_other", root, err)
		}
		unix.Close(fd)
		rel := path.Join(ProbeDir, name)
		defer unix.Unlinkat(unix.AT_FDCWD, path.Join(root, rel), 0)
		f, err := OpenFile(root, rel, o, 0o600)
		if errors.Is(err, unix.EROFS) {
			return fmt.Errorf("the share at %s is mounted read-only", root)
		}
		if err != nil {
			uid := -1
			if st, serr := os.Lstat(path.Join(root, rel)); serr == nil {
				uid = int(st.Sys().(*syscall.Stat_t).Uid)
			}
			return fmt.Errorf("%w: a file made at %s as uid %d belongs to uid %d and cannot be handed to it (%v)", ErrNoOwners, root, probeUID, uid, err)
		}
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return err
		}
		if int(st.Uid) != probeUID {
			return fmt.Errorf("%w: a file made at %s as uid %d belongs to uid %d", ErrNoOwners, root, probeUID, st.Uid)
		}
		return nil
	})
	// A file the user could not remove (not theirs) goes as root.
	_ = unix.Unlinkat(unix.AT_FDCWD, path.Join(root, ProbeDir, name), 0)
	if err != nil {
		return "", err
	}
	return mode, nil
}

// probeRoot finds whether root may make a directory in root's home/ and
// hand it to o.
func probeRoot(root, name string, o Owner) (Mode, error) {
	dir := path.Join("home", name)
	err := UserDir(root, dir, o, 0o700)
	if err == nil {
		uid, serr := ownerOf(root, dir)
		_ = unix.Unlinkat(unix.AT_FDCWD, path.Join(root, dir), unix.AT_REMOVEDIR)
		if serr != nil {
			return "", serr
		}
		if uid != o.UID {
			return "", fmt.Errorf("%w: a directory at %s handed to uid %d belongs to uid %d", ErrNoOwners, root, o.UID, uid)
		}
		return ModeOwners, nil
	}
	switch {
	case errors.Is(err, unix.EROFS):
		return "", fmt.Errorf("the share at %s is mounted read-only", root)
	case errors.Is(err, fs.ErrPermission):
		return ModeSquashed, nil
	}
	return "", err
}

func ownerOf(root, rel string) (int, error) {
	rfd, err := openRoot(root)
	if err != nil {
		return 0, err
	}
	defer unix.Close(rfd)
	fd, err := openPath(rfd, rel)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return int(st.Uid), nil
}
