package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpKilledBeforeRecordingAnAgent: `dspool up` killed with SIGKILL right
// after it started a node's agent, before it recorded it (the test hook
// DSPOOL_TEST_PAUSE_AFTER_AGENT_START holds it there), leaves that agent
// running; the next `dspool up` adopts it, and no second agent of the node
// ever runs beside it. Ctrl-C then stops it.
func TestUpKilledBeforeRecordingAnAgent(t *testing.T) {
	requireRoot(t)
	cfg := upConfig{UIDBase: uidBase(310), Args: []string{"--node-grace", "20s"}}
	up := startUp(t, cfg)
	cfg.Data, cfg.Login = up.Data, up.Login
	state := filepath.Join(up.Data, "agents", "default-1")
	t.Cleanup(func() {
		for _, pid := range agentPIDs(state) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// `dspool up` and the node's agent die: the next run starts the agent
	// anew, and is killed right after that start.
	first := agentPID(t, state)
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the node's agent to die", func() bool { return len(agentPIDs(state)) == 0 })
	paused := cfg
	paused.Env = []string{"DSPOOL_TEST_PAUSE_AFTER_AGENT_START=default-1"}
	early := launchUp(t, paused)
	const hook = "test hook: paused after starting the agent of default-1 (pid "
	var started int
	eventually(t, 30*time.Second, "the next dspool up to start the node's agent and pause", func() bool {
		b, _ := os.ReadFile(early.stderr)
		_, rest, ok := strings.Cut(string(b), hook)
		if ok {
			_, _ = fmt.Sscanf(rest, "%d)", &started)
		}
		return started > 0
	})
	if err := early.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-early.done
	if pids := agentPIDs(state); !slices.Equal(pids, []int{started}) {
		t.Fatalf("agents %v of default-1 once the run that started %d was killed, want it alone", pids, started)
	}

	next := startUp(t, cfg)
	eventually(t, 10*time.Second, "the next run to adopt the agent", func() bool {
		b, _ := os.ReadFile(next.stderr)
		return strings.Contains(string(b), fmt.Sprintf(`msg="adopted the local agent of an earlier run" node=default-1 pid=%d`, started))
	})
	// Past two of its restart delays (2s): still that agent alone, and
	// none refused beside it.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if pids := agentPIDs(state); !slices.Equal(pids, []int{started}) {
			t.Fatalf("agents %v of default-1 after the next run started, want the one the killed run started, %d", pids, started)
		}
	}
	if log := tail(state+".log", 100000); strings.Contains(log, "it is this node's agent already") {
		t.Errorf("a second agent of default-1 was started, and refused:\n%s", log)
	}
	next.waitNodes(t, "", 1)

	next.Stop()
	eventually(t, 10*time.Second, "the adopted agent to stop with dspool up", func() bool { return len(agentPIDs(state)) == 0 })
}
