package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// poolNodes lists the nodes of pool that are not gone.
func (u *upProc) poolNodes(t *testing.T, pool string) []*dspool.Node {
	t.Helper()
	out, _, code := cli(t, u.env(), "node", "list", "--pool", pool, "-o", "json")
	var nodes []*dspool.Node
	if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil {
		return nil
	}
	return nodes
}

func (u *upProc) events(t *testing.T, pool string) []dspool.PoolEvent {
	t.Helper()
	var evs []dspool.PoolEvent
	cliJSON(t, u.env(), &evs, "pool", "events", pool)
	return evs
}

// hasEvent reports whether an event of kind whose message contains every
// part is among evs.
func hasEvent(evs []dspool.PoolEvent, kind string, parts ...string) bool {
next:
	for _, e := range evs {
		if e.Kind != kind {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(e.Message, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// TestAutoscaleFromZero: a pool with min 0 grows on a submitted job, runs
// it, goes back to zero after its idle timeout, and an SSH login wakes it
// again, showing the wait on the terminal, as does a notebook start. A pool
// at its max makes a login wait, then gives up at its wait_timeout with the
// reason.
func TestAutoscaleFromZero(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	up := startUp(t, upConfig{UIDBase: uidBase(25)})
	ada := up.sshUser(t, "e2escale25a")
	bob := up.sshUser(t, "e2escale25b")
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: burst
  node: {cpus: 1, memory: 2GiB}
  setup: sleep 2   # a node that takes a while to boot
  sessions: {cpus: 1, memory: 1GiB}
  autoscale: {min: 0, max: 2, idle_timeout: 3s, wait_timeout: 60s}
- name: tiny
  node: {cpus: 1, memory: 1GiB}
  sessions: {cpus: 1, memory: 1GiB}
  autoscale: {min: 0, max: 1, idle_timeout: 1h, wait_timeout: 4s}
`))
	if n := up.poolNodes(t, "burst"); len(n) != 0 {
		t.Fatalf("pool burst starts with %d nodes, want 0", len(n))
	}

	t.Run("a job wakes the pool and runs", func(t *testing.T) {
		id := submit(t, up.userEnv(ada.token), "--pool", "burst", "--", "true")
		j := waitState(t, up.userEnv(ada.token), id, dspool.JobSucceeded, 30*time.Second)
		if j.StartedAt == nil {
			t.Fatalf("job %d has no start time", id)
		}
		t.Logf("job submitted to an empty pool (nodes boot in 2 s) -> running in %s", j.StartedAt.Sub(j.SubmittedAt).Round(time.Millisecond))
		if j.Pool != "burst" || j.Node == "" {
			t.Fatalf("job ran in pool %q on node %q, want a node of pool burst", j.Pool, j.Node)
		}
		if evs := up.events(t, "burst"); !hasEvent(evs, dspool.EventScaleOut, "added 1 node", "1 queued job", "the pool has no node") {
			t.Fatalf("no scale_out event saying why: %+v", evs)
		}
	})

	t.Run("the idle pool goes back to zero", func(t *testing.T) {
		eventually(t, 30*time.Second, "pool burst back to zero nodes", func() bool { return len(up.poolNodes(t, "burst")) == 0 })
		evs := up.events(t, "burst")
		if !hasEvent(evs, dspool.EventScaleIn, "idle for", "idle_timeout 3s") || !hasEvent(evs, dspool.EventRemove, "removed node burst-1") {
			t.Fatalf("no scale_in and node_removed events: %+v", evs)
		}
	})

	t.Run("an SSH login wakes it with progress", func(t *testing.T) {
		began := time.Now()
		out, errs, code := ada.ssh(t, ada.Name+"+burst", nil, "id -u")
		if code != 0 || strings.TrimSpace(out) != fmt.Sprint(ada.UID) {
			t.Fatalf("ssh %s+burst: exit %d, stdout %q, stderr %q", ada.Name, code, out, errs)
		}
		if !strings.Contains(errs, "dspool: waiting for a node in pool burst") {
			t.Fatalf("the wait was not shown on the terminal: stderr %q", errs)
		}
		t.Logf("ssh login to an empty pool -> command done in %s", time.Since(began).Round(time.Millisecond))
	})

	t.Run("a notebook start wakes it", func(t *testing.T) {
		requireJupyter(t)
		eventually(t, 30*time.Second, "pool burst back to zero nodes", func() bool { return len(up.poolNodes(t, "burst")) == 0 })
		var nb dspool.Notebook
		cliJSON(t, up.userEnv(ada.token), &nb, "notebook", "start", "--pool", "burst")
		if nb.State != dspool.NotebookStarting || !strings.Contains(nb.Message, "waiting for a node in pool burst") {
			t.Fatalf("notebook start on an empty pool: %+v, want starting and waiting for a node", nb)
		}
		cliJSON(t, up.userEnv(ada.token), &nb, "notebook", "start", "--pool", "burst", "--wait")
		if nb.State != dspool.NotebookReady || !strings.HasPrefix(nb.NodeName, "burst-") {
			t.Fatalf("notebook: %+v, want ready on a node of pool burst", nb)
		}
		cliOK(t, up.userEnv(ada.token), "notebook", "stop")
	})

	t.Run("a full pool at its max makes a login wait, then says why", func(t *testing.T) {
		// bob's session fills the only node tiny may have.
		hold := exec.Command("ssh", append(bob.sshOpts(up.SSHPort), bob.Name+"+tiny@127.0.0.1", "echo in; exec sleep 120")...)
		stdout, _ := hold.StdoutPipe()
		if err := hold.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hold.Process.Kill(); _ = hold.Wait() })
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "in\n" {
			t.Fatalf("bob's session in pool tiny printed %q", line)
		}
		_, errs, code := ada.ssh(t, ada.Name+"+tiny", nil, "true")
		if code != 255 || !strings.Contains(errs, "pool tiny is at its max of 1 node") ||
			!strings.Contains(errs, "within 4s (its wait_timeout)") {
			t.Fatalf("exit %d, stderr %q; want 255 and the reason", code, errs)
		}
		// A job that needs the whole node waits, and --wait-timeout says why.
		_, errs, code = cli(t, up.userEnv(ada.token), "job", "submit", "--pool", "tiny", "--memory", "1GiB", "--wait", "--wait-timeout", "3s", "--", "true")
		if code != 124 || !strings.Contains(errs, "is still queued after 3s") || !strings.Contains(errs, "pool tiny is at its max of 1 node") {
			t.Fatalf("job submit --wait-timeout: exit %d, stderr %q", code, errs)
		}
	})
	var d api.PoolDetail
	cliJSON(t, up.env(), &d, "pool", "show", "burst")
	if d.Autoscale == nil || d.Autoscale.Max != 2 {
		t.Fatalf("pool show lost the autoscale policy: %+v", d.Pool)
	}
}
