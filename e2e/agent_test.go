package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestAgentJoins starts a second agent as its own process, joined over
// loopback to a static pool with a join token (the second of two it is
// given), and runs a job on it.
func TestAgentJoins(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(4)})
	_, token := up.createUser(t, "e2edave4")
	user := up.userEnv(token)
	applyPool(t, up, "name: ext\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 1\n")
	join := strings.TrimSpace(cliOK(t, up.env(), "pool", "join-token", "ext"))
	if !strings.HasPrefix(join, "dspj_") {
		t.Fatalf("pool join-token printed %q, want a token starting dspj_", join)
	}

	// Machines made from one model get their growth's tokens, comma-
	// separated: an agent joins with the first that is not spent.
	_, pin, _ := strings.Cut(join, ".")
	tokens := "dspj_00notatoken0000000000000000." + pin + "," + join
	dir := tempDir(t)
	ag := startAgent(t, dir, "--server", up.URL, "--join-token", tokens, "--pool", "ext", "--name", "e2e-ext4",
		"--share", up.Share, "--state", filepath.Join(dir, "state"), "--cpus", "1", "--memory", "1GiB")
	nodes := up.waitNodes(t, "ext", 1)
	n := nodes[0]
	if n.Name != "e2e-ext4" || n.Pool != "ext" || n.Inventory.CPUs != 1000 || n.Inventory.Memory != 1<<30 {
		t.Errorf("the joined node: name %s, pool %s, %s cpus, %s; want e2e-ext4 in ext with 1 cpu and 1GiB",
			n.Name, n.Pool, n.Inventory.CPUs, n.Inventory.Memory)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "node.json")); err != nil {
		t.Errorf("the agent kept no identity in its state directory: %v", err)
	}

	j, errs, code := submitWait(t, user, "--pool", "ext", "--cpus", "0.5", "--", "sh", "-c", "echo on $DSPOOL_NODE")
	if code != 0 || j.State != dspool.JobSucceeded {
		t.Fatalf("a job in pool ext: exit code %d, state %s; want 0, succeeded (stderr: %s)", code, j.State, errs)
	}
	if j.Node != n.ID {
		t.Errorf("the job ran on node %q, want the joined node %q", j.Node, n.ID)
	}
	if got := cliOK(t, user, "job", "logs", itoa(j.ID)); got != "on e2e-ext4\n" {
		t.Errorf("job logs: got %q, want %q", got, "on e2e-ext4\n")
	}
	// The default pool's job never lands on the joined node.
	d, _, _ := submitWait(t, user, "--cpus", "0.1", "--", "true")
	if d.Node == n.ID || d.Pool != "default" {
		t.Errorf("a job in pool default ran on node %s of pool ext", d.Node)
	}
	ag.stop(t)
}

// agentProc is a `dspool agent` the test started.
type agentProc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr string
	state  string // --state
	once   sync.Once
}

// startAgent runs `dspool agent` with args, stopping it when the test ends.
func startAgent(t *testing.T, dir string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{done: make(chan struct{}), stderr: filepath.Join(dir, "agent.err")}
	for i, arg := range args[:len(args)-1] {
		if arg == "--state" {
			a.state = args[i+1]
		}
	}
	a.cmd = startProc(t, nil, filepath.Join(dir, "agent.out"), a.stderr, append([]string{"agent"}, args...)...)
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", a.stderr, tail(a.stderr, 4000))
		}
		a.stop(t)
		removeNodeCgroups(a.state)
	})
	return a
}

// exited reports whether the agent has exited.
func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the agent to stop its jobs and exit.
func (a *agentProc) stop(t *testing.T) {
	a.once.Do(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			t.Errorf("dspool agent did not exit within 30s of SIGTERM; killing it")
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
	})
}
