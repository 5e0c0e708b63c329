package share

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"

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
// (ModeSquashed). A share that keeps no owners (SMB mounted with uid=,
// sshfs to an account that is not root) is an error wrapping ErrNoOwners;
// one where nothing can be created (read-only) is an error too.
func Probe(root string) (Mode, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := ".probe-" + hex.EncodeToString(b)
	o := Owner{probeUID, probeGID}
	// As root, in root's home/: allowed only where root is root.
	dir := path.Join("home", name)
	err := MkdirAll(root, dir, o, 0o700)
	if err == nil {
		uid, serr := ownerOf(root, dir)
		_ = unix.Unlinkat(unix.AT_FDCWD, path.Join(root, dir), unix.AT_REMOVEDIR)
		if serr != nil {
			return "", serr
		}
		if uid != probeUID {
			return "", fmt.Errorf("%w: a directory at %s handed to uid %d belongs to uid %d", ErrNoOwners, root, probeUID, uid)
		}
		return ModeOwners, nil
	}
	if errors.Is(err, unix.EROFS) {
		return "", fmt.Errorf("the share at %s is mounted read-only", root)
	}
	if !errors.Is(err, fs.ErrPermission) {
		return "", err
	}
	// Root may not: is a file a user makes theirs?
	rel := path.Join(ProbeDir, name)
	uid := -1
	err = As(probeUID, probeGID, func() error {
		dfd, err := walk(root, ProbeDir, false, Owner{}, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		defer unix.Unlinkat(dfd, name, 0)
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		uid = int(st.Uid)
		return nil
	})
	switch {
	case errors.Is(err, unix.EROFS):
		return "", fmt.Errorf("the share at %s is mounted read-only", root)
	case err != nil:
		return "", fmt.Errorf("neither root nor a user may create files in the share at %s (%s): %w", root, rel, err)
	case uid != probeUID:
		return "", fmt.Errorf("%w: a file made at %s as uid %d belongs to uid %d", ErrNoOwners, root, probeUID, uid)
	}
	return ModeSquashed, nil
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
