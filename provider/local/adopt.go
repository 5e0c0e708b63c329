package local

// Adopting agents: a `dspool up` that crashed (or was killed with SIGKILL)
// leaves its agents running, with their work. The next one finds each by the
// pid file the provider wrote in the node's state directory when it started
// it, and takes it over instead of starting a second agent for the node.
// Since the agent is not its child, it watches it through a pidfd, and
// believes a pid only when /proc shows the same process: the same boot, the
// same start time, the same executable, and an agent's command line for
// this state directory. A pid reused by another process is never taken for
// the agent, and never signalled.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/dspool/dspool/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// pidFileName is the file, in a node's state directory, that names the
// agent process running for it.
const pidFileName = "agent.pid"

// pidFile is what the provider records of an agent it started.
type pidFile struct {
	PID int `json:"pid"`
	// Start is the process's start time, in clock ticks after boot
	// (field 22 of /proc/PID/stat): with Boot, it tells the process from
	// a later one given the same pid.
	Start uint64 `json:"start"`
	Boot  string `json:"boot"`
	// Exe is where /proc/PID/exe pointed when it started ("" when /proc
	// did not say).
	Exe string `json:"exe,omitempty"`
}

// recordAgent writes the pid file of the agent pid, just started in state.
// The process is this one's child, not yet waited for, so its pid cannot
// have been reused.
func recordAgent(state string, pid int) error {
	start, err := procStart(pid)
	if err != nil {
		return err
	}
	boot, err := bootID()
	if err != nil {
		return err
	}
	exe, _ := procExe(pid)
	b, _ := json.Marshal(pidFile{PID: pid, Start: start, Boot: boot, Exe: exe})
	return atomicfile.Write(filepath.Join(state, pidFileName), append(b, '\n'), 0o600)
}

// liveAgent is an agent process found running for a state directory.
type liveAgent struct {
	pid   int
	pidfd int // refers to that process, whatever its pid becomes
	// same says its command line is the one the provider would start
	// now: other settings (the server's address, the node's size) need a
	// new agent.
	same bool
}

// findAgent returns the agent that the pid file in state names, if it
// still runs and is that agent; nil when there is none. args are the
// arguments (after the program) the provider starts the agent with now;
// nil accepts any agent of this state directory.
func findAgent(state string, args []string) (*liveAgent, error) {
	b, err := os.ReadFile(filepath.Join(state, pidFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pf pidFile
	if err := json.Unmarshal(b, &pf); err != nil || pf.PID <= 1 {
		return nil, fmt.Errorf("%s: not a pid file", filepath.Join(state, pidFileName))
	}
	if boot, err := bootID(); err != nil || boot != pf.Boot {
		return nil, err // an earlier boot's: nothing of it runs
	}
	// The pidfd first, then /proc: if the process at the pid is still the
	// one recorded once the pidfd is open, the pidfd refers to it.
	fd, err := unix.PidfdOpen(pf.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd of %d: %w", pf.PID, err)
	}
	same, ok := isAgent(pf, state, args)
	if !ok {
		unix.Close(fd)
		return nil, nil
	}
	return &liveAgent{pid: pf.PID, pidfd: fd, same: same}, nil
}

// isAgent says whether the process pf names is still the agent that pf
// recorded, running with state, and whether its arguments are args.
func isAgent(pf pidFile, state string, args []string) (same, ok bool) {
	start, err := procStart(pf.PID)
	if err != nil || start != pf.Start {
		return false, false
	}
	// A process that cannot be traced (an agent makes itself not
	// dumpable) hides its executable from another user than root; the
	// start time has already told it from any later process.
	if pf.Exe != "" {
		if exe, err := procExe(pf.PID); err == nil && exe != pf.Exe {
			return false, false
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pf.PID))
	if err != nil {
		return false, false
	}
	argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if !slices.Contains(argv, "agent") || !hasPair(argv, "--state", state) {
		return false, false
	}
	// The program is argv[0], or argv[0] and argv[1] for a script run by
	// its interpreter: compare what follows.
	return args == nil || len(argv) > len(args) && slices.Equal(argv[len(argv)-len(args):], args), true
}

func hasPair(argv []string, flag, value string) bool {
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag && argv[i+1] == value {
			return true
		}
	}
	return slices.Contains(argv, flag+"="+value)
}

// procStart is field 22 of /proc/PID/stat, the process's start time in
// clock ticks after boot.
func procStart(pid int) (uint64, error) {
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

// procExe is the executable of pid, as /proc shows it; a file replaced
// since it started (an upgrade) still counts as the same path.
func procExe(pid int) (string, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return strings.TrimSuffix(exe, " (deleted)"), err
}

func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b)), err
}

// waitPidfd blocks until the process of fd has exited.
func waitPidfd(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}
