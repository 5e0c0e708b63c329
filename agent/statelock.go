package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockState takes the lock of the state directory dir for the agent's
// life: one agent per node identity, since a second one would fight the
// first over its node's attempts and cgroups. That matters most where
// agents outlive what started them (`dspool up` adopts the agents a crashed
// run left): a second agent started by hand, or by mistake, is refused
// here, naming the one that holds the directory. The lock goes with the
// process, however it ends.
func lockState(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
		}
		holder := "another agent"
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			holder = fmt.Sprintf("another agent (pid %d)", pid)
		}
		return nil, fmt.Errorf("%s is running with state directory %s: it is this node's agent already; stop it first, or give this one its own --state", holder, dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}
