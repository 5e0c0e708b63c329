package local

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool/autoscale/providertest"
	"github.com/dspool/dspool/internal/agentlock"
)

// testAgentVar makes the test binary stand in for `dspool agent`: it takes
// its state directory's lock as the agent does (internal/agentlock), after
// the pause the variable gives (a slow start), and runs until SIGTERM.
const testAgentVar = "DSPOOL_LOCAL_TEST_AGENT"

func TestMain(m *testing.M) {
	if d, ok := os.LookupEnv(testAgentVar); ok {
		os.Exit(testAgent(d))
	}
	os.Exit(m.Run())
}

func testAgent(pause string) int {
	var state string
	for i := 0; i+1 < len(os.Args); i++ {
		if os.Args[i] == "--state" {
			state = os.Args[i+1]
		}
	}
	handed, err := agentlock.Inherited()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	d, _ := time.ParseDuration(pause)
	time.Sleep(d)
	lock, err := agentlock.Take(state, handed)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer lock.Close()
	<-stop
	return 0
}

// crashAfterStart makes p's next agent start end as if p's process died
// right after the fork, before anything recorded the agent: the agent runs
// on, forgotten. It returns the agent's pid once it has started.
func crashAfterStart(t *testing.T, p *Provider) func() int {
	pid := 0
	p.opts.Started = func(_ string, child int) bool { pid = child; return true }
	t.Cleanup(func() {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
		}
	})
	return func() int {
		crash(p)
		if pid == 0 {
			t.Fatal("no agent started")
		}
		return pid
	}
}

// TestAgentStartedJustBeforeACrash: `dspool up` killed between the start of
// an agent and its pid file leaves an agent that no pid file names, which
// has not even taken its lock yet. The next run adopts that agent, and no
// second agent of its node ever runs; or, when no pool resumes its node,
// StopStrays stops it.
func TestAgentStartedJustBeforeACrash(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(testAgentVar, "300ms")
	ctx := context.Background()
	for _, resume := range []bool{true, false} {
		t.Run(fmt.Sprintf("resumed=%v", resume), func(t *testing.T) {
			p := newProvider(t, exe)
			crashed := crashAfterStart(t, p)
			names, err := p.Grow(ctx, providertest.Request(pool("cpu"), 1))
			if err != nil {
				t.Fatal(err)
			}
			first := crashed()
			state := filepath.Join(p.opts.DataDir, "agents", names[0])
			if _, err := os.Stat(filepath.Join(state, pidFileName)); !os.IsNotExist(err) {
				t.Fatalf("a pid file after a crash right after the start: %v", err)
			}

			q := again(t, p, func(o *Options) { o.Started = nil })
			if !resume {
				stop, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				q.StopStrays(stop)
				if alive(first) {
					t.Fatalf("the agent %d of a node no pool resumes runs on after StopStrays", first)
				}
				return
			}
			if err := q.Resume(pool("cpu"), names); err != nil {
				t.Fatal(err)
			}
			if got := pidOf(t, q, names[0]); got != first {
				t.Fatalf("the next run's agent of %s is pid %d, want the one the crashed run started, %d", names[0], got, first)
			}
			// Past a few restart delays: still that agent alone.
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if pids := agentsOf(state); len(pids) != 1 || pids[0] != first || pidOf(t, q, names[0]) != first {
					t.Fatalf("agents with state %s: %v (the run's: %d), want only %d", state, pids, pidOf(t, q, names[0]), first)
				}
			}
			stop, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			q.Stop(stop)
			if alive(first) {
				t.Fatalf("the adopted agent %d still runs after Stop", first)
			}
		})
	}
}

// TestFindOrLockWaitsOnlyForAnAgentOnItsWay: a lock taken for an agent
// about to start is waited for; one held by an agent that wrote its pid but
// no record (started by hand) is not, and neither is taken.
func TestFindOrLockWaitsOnlyForAnAgentOnItsWay(t *testing.T) {
	state := t.TempDir()
	handed, err := agentlock.TryLock(state)
	if err != nil || handed == nil {
		t.Fatal(handed, err)
	}
	began := time.Now()
	live, lock, err := findOrLock(state, nil, 300*time.Millisecond)
	if live != nil || lock != nil || err == nil || time.Since(began) < 300*time.Millisecond {
		t.Fatalf("a lock held for an agent on its way: %v, %v, %v after %s; want an error after the wait", live, lock, err, time.Since(began))
	}
	handed.Close()

	byHand, err := agentlock.Take(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer byHand.Close()
	began = time.Now()
	live, lock, err = findOrLock(state, nil, 10*time.Second)
	if live != nil || lock != nil || err == nil || time.Since(began) > 5*time.Second {
		t.Fatalf("a lock held by an agent started by hand: %v, %v, %v after %s; want an error at once", live, lock, err, time.Since(began))
	}
}
