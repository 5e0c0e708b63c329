package e2e_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

var adoptJobs = flag.Int("adopt-jobs", 2, "jobs running when TestUpKill9AdoptsAgents kills `dspool up`")

// TestUpKill9AdoptsAgents: `dspool up` killed with SIGKILL leaves its local
// agents and their jobs running, and the next `dspool up` on the same data
// adopts them: the same processes, one per node, and every job completes
// once, at its first attempt, also when it ended while `dspool up` was
// away. A second agent started by hand on a node's
// state directory is refused; a pid file that names another process adopts
// nothing and stops nothing; SIGTERM to `dspool up` still stops the
// agents, adopted ones too, and their jobs.
func TestUpKill9AdoptsAgents(t *testing.T) {
	requireRoot(t)
	const nodes = 2
	// A grace longer than the agents take to come back: nothing of theirs
	// may be lost in between.
	cfg := upConfig{Nodes: nodes, UIDBase: uidBase(64), Args: []string{"--node-grace", "20s"}}
	up := startUp(t, cfg)
	cfg.Data, cfg.Login = up.Data, up.Login
	states := []string{filepath.Join(up.Data, "agents", "default-1"), filepath.Join(up.Data, "agents", "default-2")}
	t.Cleanup(func() {
		// Whatever a failed test left running.
		for _, s := range states {
			for _, pid := range agentPIDs(s) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	u, token := up.createUser(t, "e2eadopt64")
	env := up.userEnv(token)
	uid := runsAs(u)

	// Each job marks its start and end in its own directory; the sleep in
	// between outlasts the restart.
	const pause = "5"
	var ids []int64
	for range *adoptJobs {
		ids = append(ids, submit(t, env, "--cpus", "0.1", "--memory", "32MiB", "--",
			"sh", "-c", "echo start >> markers; sleep "+pause+"; echo end >> markers"))
	}
	markers := func(id int64) string {
		b, _ := os.ReadFile(filepath.Join(up.Share, "jobs", itoa(id), "markers"))
		return string(b)
	}
	eventually(t, 30*time.Second, "every job to start", func() bool {
		for _, id := range ids {
			if markers(id) != "start\n" {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "every job's sleep to run", func() bool { return len(procs(uid, "sleep", pause)) == len(ids) })
	agents := onlyAgents(t, states)

	killed := time.Now()
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	if got := onlyAgents(t, states); !slices.Equal(got, agents) {
		t.Fatalf("agents after `dspool up` was killed: %v, want those that ran before, %v", got, agents)
	}
	if got := procs(uid, "sleep", pause); len(got) != len(ids) {
		t.Fatalf("%d of the %d jobs' processes run after `dspool up` was killed, want all", len(got), len(ids))
	}

	up2 := startUp(t, cfg)
	env = up2.userEnv(token)
	if got := onlyAgents(t, states); !slices.Equal(got, agents) {
		t.Fatalf("agents after the restart: %v, want those that ran on, %v", got, agents)
	}
	adopted, connected := restartTimes(t, up2.stderr, killed, nodes)
	t.Logf("%d jobs running: SIGKILL of dspool up to the next one adopting every agent: %s; to every agent connected again: %s",
		len(ids), adopted.Round(time.Millisecond), connected.Round(time.Millisecond))

	// A second agent on a node's state directory is refused by the agent.
	_, errs, code := cli(t, nil, "agent", "--server", "http://127.0.0.1:1", "--state", states[0], "--share", up.Share,
		"--cpus", "1", "--memory", "1GiB", "--gpus", "0")
	if want := fmt.Sprintf("another agent (pid %d) is running with state directory %s", agents[0], states[0]); code == 0 || !strings.Contains(errs, want) {
		t.Errorf("a second agent on %s: exit code %d, stderr %q; want a refusal saying %q", states[0], code, errs, want)
	}

	for _, id := range ids {
		j := waitState(t, env, id, dspool.JobSucceeded, 30*time.Second)
		if j.Attempt != 1 || len(j.Attempts) != 1 {
			t.Errorf("job %d: attempt %d, %d attempts, want its first and only", id, j.Attempt, len(j.Attempts))
		}
		if got := markers(id); got != "start\nend\n" {
			t.Errorf("job %d marked %q, want one run: %q", id, got, "start\nend\n")
		}
	}

	// Killed while jobs run that end before it is back: their agents keep
	// what they ended with until the next run has it.
	var short []int64
	for range 2 {
		short = append(short, submit(t, env, "--cpus", "0.1", "--memory", "32MiB", "--",
			"sh", "-c", "echo start >> markers; sleep 1; echo end >> markers"))
	}
	eventually(t, 30*time.Second, "the short jobs to start", func() bool {
		return markers(short[0]) == "start\n" && markers(short[1]) == "start\n"
	})
	killed = time.Now()
	if err := up2.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up2.done
	eventually(t, 30*time.Second, "the short jobs to end while dspool up is away", func() bool {
		return markers(short[0]) == "start\nend\n" && markers(short[1]) == "start\nend\n"
	})
	down := time.Since(killed)
	up3 := startUp(t, cfg)
	env = up3.userEnv(token)
	adopted, connected = restartTimes(t, up3.stderr, killed, nodes)
	t.Logf("dspool up away for %s: the next one adopted every agent %s after the kill, and had them all connected again %s after it",
		down.Round(time.Millisecond), adopted.Round(time.Millisecond), connected.Round(time.Millisecond))
	if got := onlyAgents(t, states); !slices.Equal(got, agents) {
		t.Fatalf("agents after the second restart: %v, want those that ran on, %v", got, agents)
	}
	for _, id := range short {
		j := waitState(t, env, id, dspool.JobSucceeded, 30*time.Second)
		if j.Attempt != 1 || len(j.Attempts) != 1 || exitCode(j.Job) != "0" {
			t.Errorf("job %d: attempt %d, %d attempts, exit code %s; want its first and only, exit code 0", id, j.Attempt, len(j.Attempts), exitCode(j.Job))
		}
		if got := markers(id); got != "start\nend\n" {
			t.Errorf("job %d marked %q, want one run: %q", id, got, "start\nend\n")
		}
	}

	// Killed again, with the first node's agent gone too and its pid file
	// naming another process: that process is not taken for the agent.
	if err := up3.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up3.done
	if err := syscall.Kill(agents[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first node's agent to die", func() bool { return len(agentPIDs(states[0])) == 0 })
	decoy := exec.Command("sleep", "600")
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = decoy.Process.Kill(); _ = decoy.Wait() })
	pointPidFile(t, states[0], decoy.Process.Pid)

	up4 := startUp(t, cfg)
	env = up4.userEnv(token)
	fresh := onlyAgents(t, states)
	if fresh[0] == agents[0] || fresh[0] == decoy.Process.Pid {
		t.Errorf("the first node's agent is pid %d after the restart, want a new one (not %d, not the decoy %d)", fresh[0], agents[0], decoy.Process.Pid)
	}
	if fresh[1] != agents[1] {
		t.Errorf("the second node's agent is pid %d after the third restart, want the one adopted before, %d", fresh[1], agents[1])
	}

	// SIGTERM stops them all, with their jobs.
	last := submit(t, env, "--cpus", "0.1", "--memory", "32MiB", "--", "sleep", "61")
	waitState(t, env, last, dspool.JobRunning, 30*time.Second)
	eventually(t, 10*time.Second, "the last job's process to run", func() bool { return len(procs(uid, "sleep", "61")) == 1 })
	if err := up4.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up4.done:
	case <-time.After(45 * time.Second):
		t.Fatal("dspool up did not exit within 45s of SIGTERM")
	}
	if code := up4.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("dspool up stopped by SIGTERM exited %d, want 0", code)
	}
	for _, s := range states {
		if left := agentPIDs(s); len(left) > 0 {
			t.Errorf("agents of %s still run after SIGTERM to dspool up: %v", s, left)
		}
	}
	if left := procs(uid, "sleep", "61"); len(left) > 0 {
		t.Errorf("the job still runs after SIGTERM to dspool up: pids %v", left)
	}
	if decoy.ProcessState != nil || syscall.Kill(decoy.Process.Pid, 0) != nil {
		t.Errorf("the process %d that the pid file named was stopped", decoy.Process.Pid)
	}
}

// onlyAgents returns the pid of each state directory's agent, failing the
// test unless there is exactly one per directory and no other agent beside
// them (of another node of theirs).
func onlyAgents(t *testing.T, states []string) []int {
	t.Helper()
	var out []int
	for _, s := range states {
		pids := agentPIDs(s)
		if len(pids) != 1 {
			t.Fatalf("agent processes with state directory %s: %v, want exactly one", s, pids)
		}
		out = append(out, pids[0])
	}
	if all := agentPIDs(filepath.Dir(states[0]) + "/*"); len(all) != len(states) {
		t.Fatalf("agent processes with a state directory in %s: %v, want only %v", filepath.Dir(states[0]), all, out)
	}
	return out
}

// agentPIDs lists the live agent processes whose state directory matches
// the pattern state (filepath.Match); not their children, which show the
// agent's command line between fork and exec.
func agentPIDs(state string) []int {
	pids := procsMatching(0, func(args []string) bool {
		if len(args) < 2 || args[1] != "agent" {
			return false
		}
		for i := 0; i+1 < len(args); i++ {
			if ok, _ := filepath.Match(state, args[i+1]); ok && args[i] == "--state" {
				return true
			}
		}
		return false
	})
	var out []int
	for _, pid := range pids {
		if !slices.Contains(pids, parentPID(pid)) {
			out = append(out, pid)
		}
	}
	return out
}

// parentPID is pid's parent (0 when it is gone).
func parentPID(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := strings.LastIndexByte(string(b), ')'); i > 0 {
		if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			return ppid
		}
	}
	return 0
}

// pointPidFile makes the agent pid file in state name pid, as if the agent
// had died and its pid had gone to another process.
func pointPidFile(t *testing.T, state string, pid int) {
	t.Helper()
	path := filepath.Join(state, "agent.pid")
	var pf map[string]any
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &pf)
	}
	if err != nil || pf["pid"] == nil {
		t.Fatalf("the agent's pid file %s: %v, %q", path, err, b)
	}
	pf["pid"] = pid
	if b, err = json.Marshal(pf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// restartTimes waits until the log of a restarted `dspool up` says that it
// adopted its n agents and that they connected again, and returns when
// each happened, after killed.
func restartTimes(t *testing.T, log string, killed time.Time, n int) (adopted, connected time.Duration) {
	t.Helper()
	var nAdopted, nConnected int
	eventually(t, 30*time.Second, fmt.Sprintf("%d agents adopted and connected again", n), func() bool {
		b, _ := os.ReadFile(log)
		nAdopted, nConnected = 0, 0
		for _, line := range strings.Split(string(b), "\n") {
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				continue
			}
			switch {
			case strings.Contains(line, `msg="adopted the local agent of an earlier run"`):
				nAdopted++
				adopted = at.Sub(killed)
			case strings.Contains(line, `msg="agent connected"`):
				if nConnected++; nConnected == n {
					connected = at.Sub(killed)
				}
			}
		}
		return nAdopted == n && nConnected >= n
	})
	return adopted, connected
}
