package local

// Adopting agents: a `dspool up` that crashed (or was killed with SIGKILL)
// leaves its agents running, with their work. The next one finds each by the
// pid file in the node's state directory, and takes it over instead of
// starting a second agent for the node. Since the agent is not its child,
// it watches it through a pidfd, and believes a pid only when /proc shows
// the same process: the same boot, the same start time, the same
// executable, and an agent's command line for this state directory. A pid
// reused by another process is never taken for the agent, and never
// signalled.
//
// The provider writes the pid file once the agent has started, which a
// crash can forestall: the agent runs from the fork on. So the provider
// takes the state directory's lock before it starts an agent, and hands it
// over (internal/agentlock): no agent of its runs without holding that lock,
// and an agent handed its lock writes the pid file itself once it runs.
// A lock held with no agent in the pid file is an agent on its way: the
// next run waits for its record, and never starts a second agent beside it.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/internal/agentlock"
	"golang.org/x/sys/unix"
)

// pidFileName is the file, in a node's state directory, that names the
// agent process running for it.
const pidFileName = agentlock.RecordName

// pidFile is what is recorded of an agent: by the provider that started
// it, and by the agent itself once it holds its state directory's lock.
type pidFile = agentlock.Record

// recordAgent writes the pid file of the agent pid, just started in state.
// The process is this one's child, not yet waited for, so its pid cannot
// have been reused.
func recordAgent(state string, pid int) error { return agentlock.Write(state, pid) }

// findOrLock returns the agent running for the state directory state (see
// findAgent), or the directory's lock, taken for the agent the caller is
// to start and hand it to. While another process holds the lock and no
// running agent is recorded, and the lock says that it was taken for an
// agent on its way, that agent is starting there (a run that started it
// died before it could record it; the agent records itself as soon as it
// runs): it waits for its record, or for the lock, up to wait. Then, when
// the holder wrote its pid without a record, and on other errors, it
// returns neither, and an error.
func findOrLock(state string, args []string, wait time.Duration) (*liveAgent, *os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		live, ferr := findAgent(state, args)
		if live != nil {
			return live, nil, nil
		}
		lock, err := agentlock.TryLock(state)
		if err != nil || lock != nil {
			// Free, the lock says no agent runs, whatever the pid file
			// says: an agent holds it from before its start to its end.
			return nil, lock, err
		}
		if !agentlock.Starting(state) {
			// An agent that wrote its pid in the lock but no record
			// of itself: started by hand, or by an earlier version
			// whose pid file was lost. Unless it has recorded itself
			// meanwhile, this run's agent is refused while it runs.
			if live, _ := findAgent(state, args); live != nil {
				return live, nil, nil
			}
			return nil, nil, fmt.Errorf("another agent holds the lock of %s, and no pid file names it", state)
		}
		if time.Now().After(deadline) {
			if ferr != nil {
				return nil, nil, ferr
			}
			return nil, nil, fmt.Errorf("a process holds the lock of %s for an agent that has not started in %s", state, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	pf, err := agentlock.Read(state)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if boot, err := agentlock.BootID(); err != nil || boot != pf.Boot {
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
	start, err := agentlock.ProcStart(pf.PID)
	if err != nil || start != pf.Start {
		return false, false
	}
	// A process that cannot be traced (an agent makes itself not
	// dumpable) hides its executable from another user than root; the
	// start time has already told it from any later process.
	if pf.Exe != "" {
		if exe, err := agentlock.ProcExe(pf.PID); err == nil && exe != pf.Exe {
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

// waitPidfd blocks until the process of fd has exited.
func waitPidfd(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}
