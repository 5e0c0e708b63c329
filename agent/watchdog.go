package agent

// The node's watchdog: a small process of its own (`dspool watchdog`)
// that kills the node's attempts when the agent dies, however it dies
// (kill -9 included: its end of a pipe closes), or when the agent has had
// no contact with the control plane past the deadline it last gave (the
// agent is stopped or hung and cannot fence itself). Attempts are found by
// their cgroups (every process, daemons included) and, for an agent without
// cgroups, by their process groups.
//
// The agent writes lines on the pipe:
//
//	deadline NS   kill at CLOCK_BOOTTIME NS unless a later deadline comes (0: none)
//	group PGID    an attempt's process group
//	ended PGID    that attempt has ended

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool/internal/backoff"
	"github.com/dspool/dspool/internal/lazyregexp"
)

// attemptCgroup matches the names of attempts' cgroups (sessions' are
// another's business).
var attemptCgroup = lazyregexp.New(`^j[0-9]+-a[0-9]+$`)

// watchdog is the agent's handle on its watchdog process. A nil one does
// nothing (an agent in a test process, with no program to run).
type watchdog struct {
	argv []string
	log  *slog.Logger

	mu       sync.Mutex
	w        *os.File // the pipe's write end; nil while none runs
	cmd      *exec.Cmd
	deadline time.Duration
	groups   map[int]bool
	closed   bool
	exited   chan struct{} // closed when the current process has exited
}

// startWatchdog runs argv (the watchdog's command line) with the node's
// cgroup directories, and keeps it running until close.
func startWatchdog(argv []string, cgroupDirs []string, log *slog.Logger) (*watchdog, error) {
	args := append([]string(nil), argv...)
	for _, d := range cgroupDirs {
		args = append(args, "--cgroup", d)
	}
	wd := &watchdog{argv: args, log: log, groups: map[int]bool{}}
	if err := wd.spawn(); err != nil {
		return nil, err
	}
	go wd.keep()
	return wd, nil
}

func (wd *watchdog) spawn() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := &exec.Cmd{Path: wd.argv[0], Args: wd.argv, Stdin: r, Stderr: os.Stderr,
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		// Its own session: a terminal's Ctrl-C or a kill of the agent's
		// process group leaves it to do its work.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start the node's watchdog %s: %w", wd.argv[0], err)
	}
	r.Close()
	wd.mu.Lock()
	wd.cmd, wd.exited = cmd, make(chan struct{})
	if wd.closed {
		w.Close() // closed meanwhile: it ends at once, finding nothing
		wd.mu.Unlock()
		return nil
	}
	wd.w = w
	// A new process is told everything the last one knew.
	lines := []string{fmt.Sprintf("deadline %d", wd.deadline)}
	for g := range wd.groups {
		lines = append(lines, fmt.Sprintf("group %d", g))
	}
	wd.mu.Unlock()
	for _, l := range lines {
		wd.send(l)
	}
	return nil
}

// keep waits for the watchdog and starts it again whenever it exits, until
// close.
func (wd *watchdog) keep() {
	var retry backoff.Backoff
	for {
		wd.mu.Lock()
		cmd, exited := wd.cmd, wd.exited
		wd.mu.Unlock()
		err := cmd.Wait()
		close(exited)
		wd.mu.Lock()
		if wd.w != nil {
			wd.w.Close()
			wd.w = nil
		}
		closed := wd.closed
		wd.mu.Unlock()
		if closed {
			return
		}
		wd.log.Error("the node's watchdog exited; starting it again", "err", err)
		for {
			time.Sleep(retry.Next())
			wd.mu.Lock()
			closed := wd.closed
			wd.mu.Unlock()
			if closed {
				return
			}
			err := wd.spawn()
			if err == nil {
				break
			}
			wd.log.Error("the node's watchdog", "err", err)
		}
	}
}

func (wd *watchdog) send(line string) {
	if wd == nil {
		return
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.w != nil {
		// A watchdog that died is started again, and told everything.
		_, _ = io.WriteString(wd.w, line+"\n")
	}
}

func (wd *watchdog) setDeadline(d time.Duration) {
	if wd == nil {
		return
	}
	wd.mu.Lock()
	wd.deadline = d
	wd.mu.Unlock()
	wd.send(fmt.Sprintf("deadline %d", d))
}

func (wd *watchdog) group(pgid int) {
	if wd == nil || pgid <= 0 {
		return
	}
	wd.mu.Lock()
	wd.groups[pgid] = true
	wd.mu.Unlock()
	wd.send(fmt.Sprintf("group %d", pgid))
}

func (wd *watchdog) ended(pgid int) {
	if wd == nil || pgid <= 0 {
		return
	}
	wd.mu.Lock()
	delete(wd.groups, pgid)
	wd.mu.Unlock()
	wd.send(fmt.Sprintf("ended %d", pgid))
}

// close ends the watchdog once the agent has stopped its work: it finds
// nothing left to kill.
func (wd *watchdog) close() {
	if wd == nil {
		return
	}
	wd.mu.Lock()
	wd.closed = true
	if wd.w != nil {
		wd.w.Close()
		wd.w = nil
	}
	exited := wd.exited
	wd.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// cgroupDirs are the directories of this node's cgroups, one per hierarchy.
func (c *cgroups) nodeDirs() []string {
	if c == nil {
		return nil
	}
	if c.v2 {
		return []string{filepath.Join(c.root, c.base)}
	}
	var out []string
	for _, ctrl := range c.controllers() {
		out = append(out, filepath.Join(c.root, ctrl, c.base))
	}
	return out
}

// RunWatchdog is the watchdog process (`dspool watchdog`): it reads
// the agent's lines from in, and kills the attempts in the cgroups under
// cgroupDirs and the process groups it was told of when in ends (the agent
// is gone) or a deadline passes; it returns at the end of in.
func RunWatchdog(ctx context.Context, in io.Reader, cgroupDirs []string, log *slog.Logger) {
	spared = os.Getppid() // the agent that started it
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	groups := map[int]bool{}
	var deadline time.Duration
	t := time.NewTicker(fenceTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case line, ok := <-lines:
			if !ok {
				if n := killAttempts(cgroupDirs, groups); n > 0 {
					log.Error("the agent is gone: killed the processes of its attempts", "processes", n)
				}
				return
			}
			verb, arg, _ := strings.Cut(line, " ")
			n, err := strconv.ParseInt(arg, 10, 64)
			if err != nil {
				continue
			}
			switch verb {
			case "deadline":
				deadline = time.Duration(n)
			case "group":
				groups[int(n)] = true
			case "ended":
				delete(groups, int(n))
			}
		case <-t.C:
			if deadline > 0 && bootNow() >= deadline {
				deadline = 0
				n := killAttempts(cgroupDirs, groups)
				log.Error("no contact with the control plane past the deadline, and the agent did not stop its attempts: killed them", "processes", n)
			}
		}
	}
}

// killAttempts kills every process of the attempts' cgroups under dirs and
// of groups, and returns how many it found.
func killAttempts(dirs []string, groups map[int]bool) int {
	n := 0
	names := map[string]bool{}
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() && attemptCgroup.MatchString(e.Name()) {
				names[e.Name()] = true
			}
		}
	}
	for name := range names {
		g := &cgroup{dirFD: -1}
		for _, d := range dirs {
			g.dirs = append(g.dirs, filepath.Join(d, name))
			g.procs = append(g.procs, filepath.Join(d, name, "cgroup.procs"))
		}
		n += len(g.pids())
		g.kill()
	}
	for pgid := range groups {
		if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}
