// Package agentlock is the lock of an agent's state directory and the record
// of the process that holds it, which `dspool up` (provider/local) uses to
// find the agents an earlier run left running.
//
// An agent holds STATE/lock (flock) for its whole life: a second agent on
// the directory is refused. A provider that starts an agent takes that lock
// first and hands it over: the child inherits the locked descriptor, so the
// lock is held from before the fork until the agent exits, whatever happens
// to the provider meanwhile. The agent keeps the descriptor it was handed
// and records itself in STATE/agent.pid (pid, start time, boot, executable),
// then writes its pid in the lock file, which held "starting" until then.
// A later provider that finds the lock held therefore knows that an agent of
// the directory runs or is about to, and waits for its record rather than
// starting a second one. Both files are in the state directory, which only
// the agents' owner can write.
package agentlock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/dspool/dspool/internal/atomicfile"
	"golang.org/x/sys/unix"
)

const (
	// LockName is the lock file in a state directory.
	LockName = "lock"
	// RecordName is the file, in a state directory, that names the agent
	// process running for it.
	RecordName = "agent.pid"
	// fdVar names the descriptor of a lock handed over: a number.
	fdVar = "DSPOOL_STATE_LOCK_FD"
)

// Record is what is kept of the agent process of a state directory.
type Record struct {
	PID int `json:"pid"`
	// Start is the process's start time, in clock ticks after boot
	// (field 22 of /proc/PID/stat): with Boot, it tells the process from
	// a later one given the same pid.
	Start uint64 `json:"start"`
	Boot  string `json:"boot"`
	// Exe is where /proc/PID/exe pointed when it was recorded ("" when
	// /proc did not say).
	Exe string `json:"exe,omitempty"`
}

// starting is what the lock file holds from TryLock until the agent it was
// handed to writes its pid there.
const starting = "starting"

// TryLock takes the lock of the state directory dir for an agent about to
// be started, which HandOver gives it, and marks it as held for an agent on
// its way (Starting). It returns a nil file and no error when another
// process holds the lock: an agent of dir runs, or is starting.
func TryLock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(starting+"\n"), 0)
	return f, nil
}

// Starting says whether the lock of dir, held, was taken by TryLock for an
// agent that has not yet written its pid there (nor its record, which it
// writes first). Otherwise its holder is an agent that wrote its pid:
// recorded if it was handed its lock, not if it was started otherwise (by
// hand, or by an earlier version).
func Starting(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, LockName))
	if err != nil {
		return false
	}
	s := strings.TrimSpace(string(b))
	return s == starting || s == "" // "": between a truncation and a write
}

// HandOver makes cmd's process inherit lock, from TryLock, as the lock of
// its state directory. The caller closes its lock once cmd has started (or
// failed to): the lock then goes with the agent.
func HandOver(cmd *exec.Cmd, lock *os.File) {
	cmd.ExtraFiles = append(cmd.ExtraFiles, lock)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// ExtraFiles[i] is descriptor 3+i in the child.
	cmd.Env = append(cmd.Env, fdVar+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
}

// Inherited returns the lock a parent handed over with HandOver, nil when
// none was. It is closed on exec from then on (the agent's children never
// hold it), and the variable that named it is gone from the environment.
func Inherited() (*os.File, error) {
	s, ok := os.LookupEnv(fdVar)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(fdVar)
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor", fdVar, s)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, fmt.Errorf("%s=%d: %w", fdVar, fd, err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), LockName), nil
}

// Take takes the lock of the state directory dir for this process's agent,
// for the life of the file it returns, and writes the pid in it. handed is
// the lock a provider handed over (Inherited), or nil: then a second agent
// on dir is refused, naming the one that holds it. An agent handed its lock
// also records itself in dir (Write), for the provider's next run.
func Take(dir string, handed *os.File) (*os.File, error) {
	f := handed
	if f != nil {
		if err := sameFile(f, filepath.Join(dir, LockName)); err != nil {
			f.Close()
			return nil, err
		}
	} else {
		var err error
		if f, err = os.OpenFile(filepath.Join(dir, LockName), os.O_CREATE|os.O_RDWR, 0o600); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	// On the descriptor handed over this changes nothing: it holds the
	// lock already.
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
	// The record first: a pid in the lock tells a provider that the
	// record, if any is coming, is there.
	if handed != nil {
		if err := Write(dir, os.Getpid()); err != nil {
			f.Close()
			return nil, fmt.Errorf("record the agent in %s: %w", dir, err)
		}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// sameFile checks that f is the file at path.
func sameFile(f *os.File, path string) error {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return fmt.Errorf("the state directory's lock handed over: %w", err)
	}
	if err := unix.Lstat(path, &b); err != nil {
		return fmt.Errorf("the state directory's lock handed over: %w", err)
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		return fmt.Errorf("the lock handed over is not %s", path)
	}
	return nil
}

// Write records pid as the agent process of the state directory dir. The
// process is this one, or its child not yet waited for, so its pid cannot
// have been reused.
func Write(dir string, pid int) error {
	start, err := ProcStart(pid)
	if err != nil {
		return err
	}
	boot, err := BootID()
	if err != nil {
		return err
	}
	exe, _ := ProcExe(pid)
	b, _ := json.Marshal(Record{PID: pid, Start: start, Boot: boot, Exe: exe})
	return atomicfile.Write(filepath.Join(dir, RecordName), append(b, '\n'), 0o600)
}

// Read returns the record in the state directory dir; an error that
// os.ErrNotExist matches when there is none.
func Read(dir string) (Record, error) {
	path := filepath.Join(dir, RecordName)
	b, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.PID <= 1 {
		return Record{}, fmt.Errorf("%s: not a pid file", path)
	}
	return r, nil
}

// ProcStart is field 22 of /proc/PID/stat, the process's start time in
// clock ticks after boot.
func ProcStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold any byte:
	// the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64) // field 3 is f[0]
}

// ProcExe is the executable of pid, as /proc shows it; a file replaced
// since it started (an upgrade) still counts as the same path.
func ProcExe(pid int) (string, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return strings.TrimSuffix(exe, " (deleted)"), err
}

// BootID tells this boot from any other.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b)), err
}
