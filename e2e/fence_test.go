package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// No process of an attempt runs beside its retry: it dies with its agent
// (kill -9 included), and a node cut off from the control plane, or whose
// agent hangs, stops it before the server retries it elsewhere.

// markerJob is a job that writes "start N" to file, then "tick N" every
// 50 ms from a child process until it is killed (N: its attempt).
func markerJob(file string) []string {
	return []string{"--", "sh", "-c", `echo "start $DSPOOL_ATTEMPT" >> ` + file +
		`; (while :; do echo "tick $DSPOOL_ATTEMPT" >> ` + file + `; sleep 0.05; done) & wait`}
}

// lateLines returns the lines attempt 1 wrote to file after attempt 2
// started.
func lateLines(file string) []string {
	b, _ := os.ReadFile(file)
	var late []string
	second := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "start 2":
			second = true
		case second && strings.HasSuffix(line, " 1"):
			late = append(late, line)
		}
	}
	return late
}

func fileHas(file, s string, n int) func() bool {
	return func() bool {
		b, _ := os.ReadFile(file)
		return strings.Count(string(b), s) >= n
	}
}

// markerDir is a directory every user may write.
func markerDir(t *testing.T) string {
	dir := tempDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentOf returns the pid of the local agent that runs job id of env.
func (u *upProc) agentOf(t *testing.T, env []string, id int64) int {
	t.Helper()
	j := job(t, env, id)
	var nodes []*dspool.Node
	cliJSON(t, u.env(), &nodes, "node", "list")
	for _, n := range nodes {
		if n.ID == j.Node {
			return agentPID(t, filepath.Join(u.Data, "agents", n.Name))
		}
	}
	t.Fatalf("job %d runs on node %q, which node list lacks", id, j.Node)
	return 0
}

// TestAttemptDiesWithItsAgent: kill -9 of an agent kills every process of
// its attempts, children in the job's process group and a daemon in a
// session of its own alike. (The agent is not restarted, so nothing of a
// next start cleans up after it.)
func TestAttemptDiesWithItsAgent(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(140)})
	u, token := up.createUser(t, "e2efence140")
	env := up.userEnv(token)
	uid := runsAs(u)
	applyPool(t, up, "name: ext\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 1\n")
	join := strings.TrimSpace(cliOK(t, up.env(), "pool", "join-token", "ext"))
	dir := tempDir(t)
	ag := startAgent(t, dir, "--server", up.URL, "--server-ca", up.CA, "--join-token", join, "--pool", "ext", "--name", "e2e-fence140",
		"--share", up.Share, "--state", filepath.Join(dir, "state"), "--cpus", "1", "--memory", "1GiB")
	up.waitNodes(t, "ext", 1)
	id := submit(t, env, "--pool", "ext", "--", "bash", "-c", "sleep 301 & setsid sleep 302 & exec sleep 300")
	left := func() int {
		return len(procs(uid, "sleep", "300")) + len(procs(uid, "sleep", "301")) + len(procs(uid, "sleep", "302"))
	}
	eventually(t, 20*time.Second, "the job and its children to run", func() bool { return left() == 3 })
	// A watchdog that dies is started again, and knows the attempts.
	first := watchdogOf(ag.cmd.Process.Pid)
	if first == 0 {
		t.Fatal("the agent runs no watchdog")
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the agent to start its watchdog again", func() bool {
		w := watchdogOf(ag.cmd.Process.Pid)
		return w != 0 && w != first
	})
	if left() != 3 {
		t.Fatalf("%d processes of the job left after its watchdog died, want 3: the watchdog's death is not the agent's", left())
	}
	if err := syscall.Kill(ag.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "every process of the attempt to die with its agent", func() bool { return left() == 0 })
	cliOK(t, env, "job", "cancel", itoa(id))
}

// TestHungAgentsAttemptsStopBeforeTheirRetry: an agent that stops
// answering (SIGSTOP: it cannot stop anything itself) has its attempts
// killed by its watchdog before the server retries them on another node.
func TestHungAgentsAttemptsStopBeforeTheirRetry(t *testing.T) {
	up := startUp(t, upConfig{Nodes: 2, UIDBase: uidBase(141)})
	_, token := up.createUser(t, "e2efence141")
	env := up.userEnv(token)
	file := filepath.Join(markerDir(t), "markers")
	id := submit(t, env, append([]string{"--retries", "1"}, markerJob(file)...)...)
	eventually(t, 20*time.Second, "attempt 1 to run", fileHas(file, "tick 1", 1))
	agent := up.agentOf(t, env, id)
	if err := syscall.Kill(agent, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(agent, syscall.SIGCONT)
	eventually(t, 30*time.Second, "attempt 2 to run on the other node", fileHas(file, "tick 2", 10))
	if late := lateLines(file); len(late) > 0 {
		t.Errorf("attempt 1 wrote %d lines after attempt 2 started: it ran beside its retry", len(late))
	}
	cliOK(t, env, "job", "cancel", itoa(id))
}

// TestAgentCutOffStopsItsAttempts: an agent that cannot reach its control
// plane (stopped here) for the node grace stops its attempts itself; once
// the control plane is back they are retried.
func TestAgentCutOffStopsItsAttempts(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(142)})
	u, token := up.createUser(t, "e2efence142")
	env := up.userEnv(token)
	file := filepath.Join(markerDir(t), "markers")
	id := submit(t, env, append([]string{"--retries", "1"}, markerJob(file)...)...)
	eventually(t, 20*time.Second, "attempt 1 to run", fileHas(file, "tick 1", 1))
	running := func() int {
		return len(procsMatching(runsAs(u), func(args []string) bool { return len(args) == 3 && args[0] == "sh" && strings.Contains(args[2], file) }))
	}
	if running() == 0 {
		t.Fatal("found no process of the job")
	}
	if err := syscall.Kill(up.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(up.cmd.Process.Pid, syscall.SIGCONT)
		}
	}()
	// The node grace is 3s, the kill grace 1s.
	eventually(t, 10*time.Second, "attempt 1 to stop while its node is cut off", func() bool { return running() == 0 })
	_ = syscall.Kill(up.cmd.Process.Pid, syscall.SIGCONT)
	stopped = false
	eventually(t, 30*time.Second, "attempt 2 to run", fileHas(file, "tick 2", 5))
	j := job(t, env, id)
	if r := j.Attempts[0]; r.Reason != dspool.ReasonNodeLost {
		t.Errorf("attempt 1 ended with reason %q (%s), want node_lost", r.Reason, r.Message)
	}
	cliOK(t, env, "job", "cancel", itoa(id))
}

// startUpAs runs `dspool up` as uid (its agents then run jobs as uid, with
// no cgroups), with the usual short timings; it stops it when the test
// ends.
func startUpAs(t *testing.T, uid int) *upProc {
	t.Helper()
	dir := filepath.Join(tempDir(t), "home")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	u := &upProc{Data: filepath.Join(dir, "data"), Login: filepath.Join(dir, "login.json"), t: t, done: make(chan struct{}),
		stdout: filepath.Join(dir, "up.out"), stderr: filepath.Join(dir, "up.err")}
	u.Share = u.Data + "-share"
	// The binary where uid may run it.
	exe := filepath.Join(filepath.Dir(dir), "dspool")
	if b, err := os.ReadFile(bin); err != nil || os.WriteFile(exe, b, 0o755) != nil {
		t.Fatalf("copy the binary: %v", err)
	}
	cmd := exec.Command(exe, "up", "--data", u.Data, "--listen", "127.0.0.1:0", "--ssh-listen", "off", "--nodes", "1",
		"--node-grace", "3s", "--kill-grace", "1s", "--heartbeat", "200ms", "--uid-base", strconv.Itoa(uidBase(144)))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "DSPOOL_CONFIG=" + u.Login}
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u.cmd = cmd
	go func() { _ = cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dspool up as uid %d:\n%s\n%s", uid, out.String(), tail(filepath.Join(u.Data, "agents", "default-1.log"), 3000))
		}
		u.Stop()
	})
	eventually(t, 30*time.Second, "`dspool up` to print its address", func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, "dspool is up at "); ok {
				u.URL = strings.TrimSpace(rest)
			}
		}
		return u.URL != ""
	})
	u.CA = filepath.Join(u.Data, "tls", "ca.crt")
	testCAs.trust(t, u.CA)
	u.waitNodes(t, "", 1)
	return u
}

// TestUnprivilegedAgentsAttemptDiesWithIt: an agent that is not root (no
// cgroups, jobs run as its own user) and crashes takes every process of
// its attempts with it, so the retry it runs after its restart never runs
// beside them.
func TestUnprivilegedAgentsAttemptDiesWithIt(t *testing.T) {
	const nobody = 65534
	up := startUpAs(t, nobody)
	file := filepath.Join(markerDir(t), "markers")
	id := submit(t, up.env(), append([]string{"--retries", "1"}, markerJob(file)...)...)
	eventually(t, 20*time.Second, "attempt 1 to run", fileHas(file, "tick 1", 1))
	if err := syscall.Kill(up.agentOf(t, up.env(), id), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// `dspool up` starts its agent again, which runs the retry.
	eventually(t, 30*time.Second, "attempt 2 to run", fileHas(file, "tick 2", 10))
	if late := lateLines(file); len(late) > 0 {
		t.Errorf("attempt 1 wrote %d lines after attempt 2 started: it ran beside its retry", len(late))
	}
	cliOK(t, up.env(), "job", "cancel", itoa(id))
}

// watchdogOf returns the pid of the watchdog of the agent agent, or 0.
func watchdogOf(agent int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(agent) {
			continue
		}
		args, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if a := strings.Split(string(args), "\x00"); len(a) > 1 && a[1] == "watchdog" {
			return pid
		}
	}
	return 0
}
