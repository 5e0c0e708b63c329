package e2e_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestAgentKilledTakesItsJobs: when an agent dies (kill -9), the attempts
// it ran die with it, so the retry that follows never runs beside a stale
// copy; the restarted agent's node takes the retry.
func TestAgentKilledTakesItsJobs(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(11)})
	u, token := up.createUser(t, "e2ekill11")
	env := up.userEnv(token)
	uid := runsAs(u)
	marker := "e2e-agentkill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	id := submit(t, env, "--retries", "1", "--", "bash", "-c", "exec -a "+marker+"-$DSPOOL_ATTEMPT sleep 120")
	eventually(t, 20*time.Second, "attempt 1 to run", func() bool { return len(procs(uid, marker+"-1", "120")) == 1 })

	agent := agentPID(t, filepath.Join(up.Data, "agents", "default-1"))
	if err := syscall.Kill(agent, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "attempt 1 to die with its agent", func() bool { return len(procs(uid, marker+"-1", "120")) == 0 })
	j := waitState(t, env, id, dspool.JobRunning, 30*time.Second)
	eventually(t, 30*time.Second, "attempt 2 to run", func() bool {
		j = job(t, env, id)
		return j.Attempt == 2 && j.State == dspool.JobRunning && len(procs(uid, marker+"-2", "120")) == 1
	})
	if r := j.Attempts[0].Reason; r != dspool.ReasonNodeLost {
		t.Errorf("attempt 1 ended with reason %q, want node_lost", r)
	}
	cliOK(t, env, "job", "cancel", itoa(id))
	eventually(t, 20*time.Second, "no copy left", func() bool { return len(procs(uid, marker+"-2", "120")) == 0 })
}

// agentPID finds the agent process whose state directory is state.
func agentPID(t *testing.T, state string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[1] == "agent" && strings.Contains(string(b), "\x00--state\x00"+state+"\x00") {
			return pid
		}
	}
	t.Fatalf("no agent process with state directory %s", state)
	return 0
}
