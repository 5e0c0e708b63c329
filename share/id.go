package share

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// IDFile is the marker at the root of the share that names it: the control
// plane writes a random id there at its first start, and an agent whose share
// does not hold the same id (nothing mounted, another pool's share) is
// refused. The root is the operator's, so users cannot plant one.
const IDFile = ".dspool-share-id"

// EnsureID returns the share's id, writing a new one at root when there is
// none.
func EnsureID(root string) (string, error) {
	id, err := ReadID(root)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return id, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id = hex.EncodeToString(b)
	f, err := os.OpenFile(filepath.Join(root, IDFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if errors.Is(err, os.ErrExist) {
		return ReadID(root) // another control plane on the same share
	}
	if err != nil {
		return "", fmt.Errorf("mark the share: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("mark the share: %w", err)
	}
	return id, nil
}

// ReadID returns the id in the share's marker (os.ErrNotExist when there is
// none), reading it only when it is a small regular file.
func ReadID(root string) (string, error) {
	fd, err := unix.Open(filepath.Join(root, IDFile), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: filepath.Join(root, IDFile), Err: err}
	}
	f := os.NewFile(uintptr(fd), IDFile)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() || st.Size() > 256 {
		return "", fmt.Errorf("%s in the share is not the share's marker (a small regular file)", IDFile)
	}
	b := make([]byte, 256)
	n, _ := f.Read(b)
	id := strings.TrimSpace(string(b[:n]))
	if id == "" {
		return "", fmt.Errorf("%s in the share is empty", IDFile)
	}
	return id, nil
}
