// Package host holds what the benchmarks need of the machine they run on:
// free uids for the accounts dspool's agents create, and removing those
// accounts afterwards.
package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// UIDBase returns a first uid/gid for dspool's users such that the few a
// benchmark gives out are free on this machine (agents create the accounts
// with these ids), outside useradd's range (UID_MAX is 60000 on Debian). It
// is chosen once per process: a restart on the same store must give the
// same base.
var UIDBase = sync.OnceValue(func() int { return FreeUIDBase(61000) })

// FreeUIDBase returns the first of from, from+100, ... (below 65000) whose
// next 10 uids and gids are free here.
func FreeUIDBase(from int) int { return FreeUIDRange(from, 10) }

// FreeUIDRange returns the first of from, from+100, ... (below 65000)
// whose next n uids and gids are free here.
func FreeUIDRange(from, n int) int {
	free := func(base int) bool {
		for id := base; id < base+n; id++ {
			if _, err := user.LookupId(strconv.Itoa(id)); err == nil {
				return false
			}
			if _, err := user.LookupGroupId(strconv.Itoa(id)); err == nil {
				return false
			}
		}
		return true
	}
	base := from
	for base+n < 65000 && !free(base) {
		base += 100
	}
	return base
}

// UserExists reports whether this machine has an account name.
func UserExists(name string) bool {
	_, err := user.Lookup(name)
	return err == nil
}

// RemoveUser deletes the account name (userdel with flags), retrying for
// 10 s while its last processes exit; it says how to do it by hand if it
// cannot.
func RemoveUser(name string, flags ...string) {
	args := append(flags, name)
	var err error
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, cerr := exec.CommandContext(ctx, "userdel", args...).CombinedOutput()
		cancel()
		if cerr == nil {
			return
		}
		err = fmt.Errorf("userdel %v: %v: %s", args, cerr, strings.TrimSpace(string(out)))
		time.Sleep(200 * time.Millisecond)
	}
	Logf("%v; remove the user with `userdel %s`", err, strings.Join(args, " "))
}

// RaiseFileLimit makes room for n open files in this process (the
// connections it holds) and the processes it starts.
func RaiseFileLimit(n int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= uint64(n) {
		return nil
	}
	if l.Max < uint64(n) {
		l.Max = uint64(n) // needs root
	}
	l.Cur = uint64(n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raise the open files limit to %d: %w", n, err)
	}
	return nil
}

// Load1 is the machine's 1-minute load average.
func Load1() float64 {
	var l float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &l)
	}
	return l
}

// Logf prints a timestamped progress line on stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Tail returns the last n lines of out, on one line.
func Tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Poll calls done every interval until it reports true, fails, or timeout
// passes.
func Poll(ctx context.Context, timeout, interval time.Duration, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if ok, err := done(); ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready after %s", timeout)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RSSMiB is a process's resident memory in MiB (0 when it cannot be read).
func RSSMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// NewAccount returns what removes the account name once the benchmark is
// done with it, if this run made it: as root, the agents of the `dspool
// up` it starts make the accounts of its users, the first admin's among
// them. An account there before is left alone. Defer it before the stop of
// `dspool up`, so that it runs after.
func NewAccount(name string) (remove func()) {
	if os.Geteuid() != 0 || UserExists(name) {
		return func() {}
	}
	return func() {
		if UserExists(name) {
			RemoveUser(name)
		}
	}
}
