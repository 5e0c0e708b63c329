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
	"github.com/dspool/dspool/api"
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

// TestAttemptStartedUnheardIsNotStartedAgain: an agent killed after it
// started an attempt, before the control plane heard of the start, leaves
// the attempt run once: the agent that comes next on the node reports it
// lost (its node's agent died under it), and the attempt is not started a
// second time under the same number; with no retries, the job ends there.
func TestAttemptStartedUnheardIsNotStartedAgain(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(161), Args: []string{"--node-grace", "10s"}})
	_, token := up.createUser(t, "e2estart161")
	env := up.userEnv(token)
	applyPool(t, up, "name: ext\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 1\nwork: [batch]\n")
	join := strings.TrimSpace(cliOK(t, up.env(), "pool", "join-token", "ext"))
	proxy := startLinkProxy(t, strings.TrimPrefix(up.URL, "https://"))
	state := filepath.Join(tempDir(t), "state")
	args := []string{"--server", "https://" + proxy.addr(), "--join-token", join, "--pool", "ext", "--name", "e2e-start161",
		"--share", up.Share, "--state", state, "--cpus", "1", "--memory", "1GiB"}
	ag := startAgent(t, tempDir(t), args...)
	up.waitNodes(t, "ext", 1)

	// The start reaches the agent; nothing the agent says reaches the
	// control plane, and it is lost when the agent dies.
	proxy.muteAgent()
	id := submit(t, env, "--pool", "ext", "--", "sh", "-c", `echo "start $DSPOOL_ATTEMPT $$" >> markers; exec sleep 120`)
	markers := filepath.Join(up.Share, "jobs", itoa(id), "markers")
	eventually(t, 20*time.Second, "the job to start", fileHas(markers, "start 1 ", 1))
	proxy.cutLink(true)
	if err := ag.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-ag.done
	proxy.healLink()
	startAgent(t, tempDir(t), args...)

	var j *api.JobDetail
	eventually(t, 30*time.Second, "the job to end, or to start again", func() bool {
		j = job(t, env, id)
		return j.State.Terminal() || fileHas(markers, "start", 2)()
	})
	b, _ := os.ReadFile(markers)
	if n := strings.Count(string(b), "start"); n != 1 {
		t.Errorf("the job started %d times (%q), want once: attempt %d, state %s", n, b, j.Attempt, j.State)
	}
	if j.State != dspool.JobFailed || j.Reason != dspool.ReasonNodeLost || j.Attempt != 1 {
		t.Errorf("the job: state %s, reason %q (%s), attempt %d; want failed, node_lost, at attempt 1", j.State, j.Reason, j.Message, j.Attempt)
	}
}
