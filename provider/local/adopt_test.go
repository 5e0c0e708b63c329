package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool/autoscale/providertest"

	"golang.org/x/sys/unix"
)

// stayingAgent stands in for `dspool agent` where adoption is tested: it
// keeps its program and command line (no exec), and exits on SIGTERM.
const stayingAgent = `trap 'kill $! 2>/dev/null; exit 0' TERM; sleep 600 3>&- & wait`

// crash makes p forget its agents without stopping them, as a `dspool up`
// killed with SIGKILL does; its agents keep running.
func crash(p *Provider) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.procs = map[string]*proc{}
}

// again is a provider on p's data directory: the next `dspool up`.
func again(t *testing.T, p *Provider, change func(*Options)) *Provider {
	opts := p.opts
	if change != nil {
		change(&opts)
	}
	q := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q.Stop(ctx)
	})
	return q
}

func pidOf(t *testing.T, p *Provider, name string) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.procs[name]
	if pr == nil {
		t.Fatalf("no agent for %s", name)
	}
	return pr.pid
}

// alive says whether pid is a process that has not exited.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(string(b[i+1:]), " Z") && !strings.HasPrefix(string(b[i+1:]), " X")
}

// agentsOf returns the pids of the processes whose command line gives
// state as --state, other than their own children (the fake agent's,
// between fork and exec, show its command line).
func agentsOf(state string) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "\x00--state\x00"+state+"\x00") || !alive(pid) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		var ppid int
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
				ppid, _ = strconv.Atoi(f[1])
			}
		}
		parent[pid] = ppid
	}
	var pids []int
	for pid, ppid := range parent {
		if _, child := parent[ppid]; !child {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestAdoptsTheAgentsOfACrashedRun: the agents of a provider that went
// away without stopping them are adopted by the next one on the same data:
// the same process, no second one; it is restarted when it exits by itself
// and stopped by Stop.
func TestAdoptsTheAgentsOfACrashedRun(t *testing.T) {
	p := newProvider(t, fakeAgent(t, stayingAgent))
	ctx := context.Background()
	names, err := p.Grow(ctx, providertest.Request(pool("cpu"), 1))
	if err != nil {
		t.Fatal(err)
	}
	name := names[0]
	state := filepath.Join(p.opts.DataDir, "agents", name)
	first := pidOf(t, p, name)
	// It leads a session of its own: no terminal's hangup or Ctrl-C that
	// reaches the provider's process reaches it.
	if sid, err := unix.Getsid(first); err != nil || sid != first {
		t.Errorf("the agent %d is in session %d (%v), want one of its own", first, sid, err)
	}
	crash(p)

	q := again(t, p, nil)
	if err := q.Resume(pool("cpu"), names); err != nil {
		t.Fatal(err)
	}
	if got := pidOf(t, q, name); got != first {
		t.Fatalf("after the restart the agent of %s is pid %d, want the one that ran on, %d", name, got, first)
	}
	if pids := agentsOf(state); len(pids) != 1 || pids[0] != first {
		t.Fatalf("agents with state %s: %v, want only %d", state, pids, first)
	}
	inst, _ := q.List(ctx, pool("cpu"))
	if len(inst) != 1 || inst[0].Name != name {
		t.Fatalf("List gives %v, want [%s]", inst, name)
	}

	// It exits by itself: the provider that adopted it starts it again.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var second int
	waitFor(t, "the adopted agent to be started again", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		if pr := q.procs[name]; pr != nil && pr.pid != first && pr.cmd != nil {
			second = pr.pid
			return true
		}
		return false
	})
	if pids := agentsOf(state); len(pids) != 1 || pids[0] != second {
		t.Fatalf("agents with state %s after the restart: %v, want only %d", state, pids, second)
	}

	// Adopted once more, then stopped on purpose: it goes.
	crash(q)
	r := again(t, q, nil)
	if err := r.Resume(pool("cpu"), names); err != nil {
		t.Fatal(err)
	}
	if got := pidOf(t, r, name); got != second {
		t.Fatalf("adopted pid %d, want %d", got, second)
	}
	stop, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.Stop(stop)
	if alive(second) {
		t.Fatalf("the adopted agent %d still runs after Stop", second)
	}
	if _, err := os.Stat(filepath.Join(state, pidFileName)); !os.IsNotExist(err) {
		t.Errorf("the pid file of a stopped agent is still there: %v", err)
	}
}

// TestPidFileOfAnotherProcess: a pid file that names a process other than
// the agent it recorded (its pid reused) adopts nothing and signals nothing:
// a new agent starts, and the other process runs on.
func TestPidFileOfAnotherProcess(t *testing.T) {
	exe := fakeAgent(t, stayingAgent)
	for _, tc := range []struct {
		name string
		// other starts the process the pid file names.
		other func(state string) *exec.Cmd
		// lie changes the record of it.
		lie func(*pidFile)
	}{
		{"an agent of this state started later", func(state string) *exec.Cmd {
			return exec.Command(exe, "agent", "--state", state)
		}, func(pf *pidFile) { pf.Start-- }},
		{"another program", func(string) *exec.Cmd { return exec.Command("sleep", "600") }, nil},
		{"an agent of another state", func(string) *exec.Cmd {
			return exec.Command(exe, "agent", "--state", t.TempDir())
		}, nil},
		{"an earlier boot", func(state string) *exec.Cmd {
			return exec.Command(exe, "agent", "--state", state)
		}, func(pf *pidFile) { pf.Boot = "00000000-0000-0000-0000-000000000000" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, exe)
			names, err := p.Grow(context.Background(), providertest.Request(pool("cpu"), 1))
			if err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(p.opts.DataDir, "agents", names[0])
			first := pidOf(t, p, names[0])
			crash(p)
			_ = syscall.Kill(first, syscall.SIGKILL)
			waitFor(t, "the first agent to die", func() bool { return !alive(first) })

			other := tc.other(state)
			if err := other.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
			if err := recordAgent(state, other.Process.Pid); err != nil {
				t.Fatal(err)
			}
			if tc.lie != nil {
				var pf pidFile
				b, _ := os.ReadFile(filepath.Join(state, pidFileName))
				if err := json.Unmarshal(b, &pf); err != nil {
					t.Fatal(err)
				}
				tc.lie(&pf)
				b, _ = json.Marshal(pf)
				if err := os.WriteFile(filepath.Join(state, pidFileName), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}

			q := again(t, p, nil)
			if err := q.Resume(pool("cpu"), names); err != nil {
				t.Fatal(err)
			}
			got := pidOf(t, q, names[0])
			if got == other.Process.Pid {
				t.Fatalf("the process %d that the pid file names was adopted as the agent", got)
			}
			q.mu.Lock()
			started := q.procs[names[0]].cmd != nil
			q.mu.Unlock()
			if !started {
				t.Fatalf("no new agent was started for %s", names[0])
			}
			stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			q.Stop(stop)
			if !alive(other.Process.Pid) {
				t.Fatalf("the process %d the pid file named was stopped with the agents", other.Process.Pid)
			}
		})
	}
}

// TestReplacesAnAgentWithOtherSettings: an agent of an earlier run started
// with other arguments (here another server address) is stopped and started
// anew with the current ones.
func TestReplacesAnAgentWithOtherSettings(t *testing.T) {
	p := newProvider(t, fakeAgent(t, stayingAgent))
	names, err := p.Grow(context.Background(), providertest.Request(pool("cpu"), 1))
	if err != nil {
		t.Fatal(err)
	}
	first := pidOf(t, p, names[0])
	crash(p)
	q := again(t, p, func(o *Options) { o.Server = "http://127.0.0.1:2" })
	if err := q.Resume(pool("cpu"), names); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent to be replaced", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		pr := q.procs[names[0]]
		return pr != nil && pr.pid != first && pr.cmd != nil && !alive(first)
	})
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pidOf(t, q, names[0])))
	if err != nil || !strings.Contains(string(b), "\x00http://127.0.0.1:2\x00") {
		t.Fatalf("the new agent's command line %q (%v) lacks the new server address", b, err)
	}
}

// TestStopStrays: an agent of an earlier run whose node no pool resumes is
// stopped; the resumed ones are left running.
func TestStopStrays(t *testing.T) {
	p := newProvider(t, fakeAgent(t, stayingAgent))
	names, err := p.Grow(context.Background(), providertest.Request(pool("cpu"), 2))
	if err != nil {
		t.Fatal(err)
	}
	kept, stray := pidOf(t, p, names[0]), pidOf(t, p, names[1])
	crash(p)
	q := again(t, p, nil)
	if err := q.Resume(pool("cpu"), names[:1]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q.StopStrays(ctx)
	if alive(stray) {
		t.Errorf("the stray agent %d of %s still runs", stray, names[1])
	}
	if !alive(kept) || pidOf(t, q, names[0]) != kept {
		t.Errorf("the adopted agent %d of %s was stopped or replaced", kept, names[0])
	}
}
