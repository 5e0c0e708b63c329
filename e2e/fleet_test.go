package e2e_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestRunningAFleet drives the fleet's verbs through the real binary with
// machines that joined a static pool: a node with a job is removed only
// with --force, which ends the job with reason node_removed and cuts its
// agent off; an agent stopped on purpose leaves at once and comes back when
// started again; a revoked join token joins nothing; a pool with a node is
// deleted only with --force. Each verb is audited and shown in the pool's
// events.
func TestRunningAFleet(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(50), Args: []string{"--node-grace", "20s"}})
	_, token := up.createUser(t, "e2efleet50")
	user := up.userEnv(token)
	admin := up.env()
	applyPool(t, up, "name: ext\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 1\n")
	join, errs, code := cli(t, admin, "pool", "join-token", "ext", "--ttl", "1h")
	join = strings.TrimSpace(join)
	if code != 0 || !strings.HasPrefix(join, "dspj_") || !strings.Contains(errs, "expires at") {
		t.Fatalf("pool join-token --ttl 1h: exit %d, %q, stderr %q; want a token and when it expires", code, join, errs)
	}
	var list api.JoinTokenList
	cliJSON(t, admin, &list, "pool", "join-token", "ext", "--list")
	if len(list.Tokens) != 1 || list.Tokens[0].ExpiresAt == nil || strings.Contains(cliOK(t, admin, "pool", "join-token", "ext", "--list", "-o", "json"), join) {
		t.Fatalf("join tokens of ext: %+v; want one that expires, and never its secret", list.Tokens)
	}

	dir := tempDir(t)
	agentArgs := func(name, state, tok string) []string {
		return []string{"--server", up.URL, "--join-token", tok, "--pool", "ext", "--name", name,
			"--share", up.Share, "--state", state, "--cpus", "1", "--memory", "1GiB"}
	}
	a := startAgent(t, tempDir(t), agentArgs("e2e-fleet-a", filepath.Join(dir, "a"), join)...)
	up.waitNodes(t, "ext", 1)
	id := submit(t, user, "--pool", "ext", "--cpus", "0.5", "--", "sleep", "120")
	waitState(t, user, id, dspool.JobRunning, 20*time.Second)
	eventually(t, 20*time.Second, "the job to start", func() bool { return job(t, user, id).StartedAt != nil })

	_, errs, code = cli(t, admin, "node", "remove", "e2e-fleet-a")
	if want := "runs 1 job (id " + itoa(id) + "): drain it first (dspool node drain e2e-fleet-a)"; code == 0 || !strings.Contains(errs, want) {
		t.Fatalf("node remove of a busy node: exit %d, stderr %q; want a refusal saying %q", code, errs, want)
	}
	var drained api.NodeChange
	cliJSON(t, admin, &drained, "node", "drain", "e2e-fleet-a")
	if drained.Node.State != dspool.NodeDraining || len(drained.Jobs) != 1 {
		t.Fatalf("node drain: %+v; want it draining with its job", drained)
	}
	var removed api.NodeChange
	cliJSON(t, admin, &removed, "node", "remove", "e2e-fleet-a", "--force")
	if removed.Node.State != dspool.NodeGone {
		t.Fatalf("node remove --force: node %s, want gone", removed.Node.State)
	}
	j := waitState(t, user, id, dspool.JobFailed, 20*time.Second)
	if j.Reason != dspool.ReasonNodeRemoved {
		t.Errorf("the removed node's job failed with reason %q, want node_removed", j.Reason)
	}
	eventually(t, 20*time.Second, "the removed node's agent to be cut off and exit", a.exited)

	// An agent stopped on purpose leaves at once, far within the grace,
	// and comes back when started again with its state.
	bState := filepath.Join(dir, "b")
	b := startAgent(t, tempDir(t), agentArgs("e2e-fleet-b", bState, join)...)
	nodeB := up.waitNodes(t, "ext", 1)[0]
	cl := up.api(up.adminToken(t))
	b.stop(t)
	stateOf := func(nodeID string) dspool.NodeState {
		nodes, err := cl.NodesWithGone(context.Background(), "ext")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.ID == nodeID {
				return n.State
			}
		}
		return ""
	}
	if s := stateOf(nodeB.ID); s != dspool.NodeGone {
		t.Errorf("a node whose agent stopped on purpose: %s, want gone at once", s)
	}
	b = startAgent(t, tempDir(t), agentArgs("e2e-fleet-b", bState, "")...)
	up.waitNodes(t, "ext", 1)

	// A revoked join token joins nothing.
	cliOK(t, admin, "pool", "join-token", "ext", "--revoke", "--all")
	c := startAgent(t, tempDir(t), agentArgs("e2e-fleet-c", filepath.Join(dir, "c"), join)...)
	eventually(t, 20*time.Second, "an agent with a revoked join token to give up", c.exited)
	if msg := tail(c.stderr, 2000); !strings.Contains(msg, "this join token was revoked") {
		t.Errorf("the refused agent said: %s; want that its join token was revoked", msg)
	}

	_, errs, code = cli(t, admin, "pool", "delete", "ext")
	if code == 0 || !strings.Contains(errs, "pool ext has 1 node (e2e-fleet-b)") {
		t.Fatalf("pool delete of a pool with a node: exit %d, stderr %q; want a refusal naming the node", code, errs)
	}
	cliOK(t, admin, "pool", "delete", "ext", "--force")
	eventually(t, 20*time.Second, "the deleted pool's agent to be cut off and exit", b.exited)

	var evs []*dspool.PoolEvent
	cliJSON(t, admin, &evs, "pool", "events", "ext")
	kinds := map[string]bool{}
	for _, e := range evs {
		kinds[e.Kind] = true
	}
	for _, k := range []string{dspool.EventJoinToken, dspool.EventDrain, dspool.EventRemove, dspool.EventLeft, dspool.EventReturned, dspool.EventPoolDeleted} {
		if !kinds[k] {
			t.Errorf("no %s event among the deleted pool's events: %v", k, kinds)
		}
	}
	var audit []*dspool.AuditEntry
	cliJSON(t, admin, &audit, "audit", "--since", "1h")
	actions := map[string]bool{}
	for _, e := range audit {
		actions[e.Action] = true
	}
	for _, act := range []string{dspool.AuditNodeDrain, dspool.AuditNodeRemove, dspool.AuditJoinTokenRevoke, dspool.AuditPoolDelete} {
		if !actions[act] {
			t.Errorf("no %s in the audit log", act)
		}
	}
}
