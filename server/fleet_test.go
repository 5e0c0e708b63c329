package server_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// nodeByID reads a node from the store, gone or not.
func nodeByID(t *testing.T, p *dspooltest.Pool, id string) *dspool.Node {
	t.Helper()
	n, err := p.DB.Node(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func audited(t *testing.T, p *dspooltest.Pool, action, outcome string) bool {
	t.Helper()
	es, err := p.Admin.Audit(context.Background(), api.AuditQuery{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Outcome == outcome {
			return true
		}
	}
	return false
}

// TestDrainAndRemoveNode: a node that runs a job is not removed without
// --force, and the refusal names the job and what to do; a drained node
// takes no new work while its job keeps running; a forced removal ends
// the job's attempt with reason node_removed, retried on another node, and
// cuts the node's agent off, which stops its work and exits.
func TestDrainAndRemoveNode(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49700})
	ctx := context.Background()
	a := p.AddAgent("default", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.WaitReady("default", 1)
	marker := "dspool-remove-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	j := submit(t, p.Admin, dspool.JobSpec{Retries: 1, Command: []string{"bash", "-c", "exec -a " + marker + " sleep 60"}})
	p.Eventually(10*time.Second, func() bool { return countProcs(marker) == 1 }, "the job to run")
	node := nodeByID(t, p, a.Node())

	_, err := p.Admin.RemoveNode(ctx, node.Name, false)
	want := "node " + node.Name + " runs 1 job (id " + strconv.FormatInt(j.ID, 10) + "): drain it first (dspool node drain " + node.Name + ")"
	if dspool.ErrorCode(err) != dspool.EConflict || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("remove a busy node: got %v, want a conflict saying %q and naming --force", err, want)
	}
	if !audited(t, p, dspool.AuditNodeRemove, dspool.AuditFailure) {
		t.Error("the refused removal is not in the audit log")
	}

	c, err := p.Admin.DrainNode(ctx, node.Name)
	if err != nil || c.Node.State != dspool.NodeDraining || len(c.Jobs) != 1 || c.Jobs[0] != j.ID {
		t.Fatalf("drain: got %+v %v, want it draining with job %d still there", c, err, j.ID)
	}
	b := p.AddAgent("default", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.WaitReady("default", 1)
	k := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	if got := p.Wait(p.Admin, k.ID); got.State != dspool.JobSucceeded || got.Node != b.Node() {
		t.Errorf("a job submitted after the drain: %s on %s, want succeeded on the other node %s", got.State, got.Node, b.Node())
	}
	if cur, _ := p.Admin.Job(ctx, j.ID); cur.State != dspool.JobRunning || cur.Node != a.Node() {
		t.Errorf("the drained node's job: %s on %s, want still running there", cur.State, cur.Node)
	}

	c, err = p.Admin.RemoveNode(ctx, node.Name, true)
	if err != nil || c.Node.State != dspool.NodeGone || len(c.Jobs) != 1 {
		t.Fatalf("forced removal: got %+v %v, want the node gone and its job ended", c, err)
	}
	p.Eventually(10*time.Second, func() bool {
		cur, err := p.Admin.Job(ctx, j.ID)
		return err == nil && cur.Attempt == 2 && cur.State == dspool.JobRunning && cur.Node == b.Node() && countProcs(marker) == 1
	}, "the job to run again, once, on the other node")
	detail, _ := p.Admin.Job(ctx, j.ID)
	if at := detail.Attempts[0]; at.Reason != dspool.ReasonNodeRemoved || !strings.Contains(at.Message, "was removed by") {
		t.Errorf("the removed node's attempt ended with %q (%q), want node_removed saying who removed it", at.Reason, at.Message)
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Error("the removed node's agent still runs: it should be cut off")
	}
	evs := poolEvents(t, p, "default")
	for _, kind := range []string{dspool.EventDrain, dspool.EventRemove} {
		if findEvent(evs, kind, node.Name) == nil {
			t.Errorf("no %s event for %s in %+v", kind, node.Name, evs)
		}
	}
	if !audited(t, p, dspool.AuditNodeRemove, dspool.AuditSuccess) || !audited(t, p, dspool.AuditNodeDrain, dspool.AuditSuccess) {
		t.Error("the drain and the removal are not in the audit log")
	}
	if _, err := p.Admin.CancelJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	p.Wait(p.Admin, j.ID)
}

// TestUndrainNode: a drained node takes work again once undrained.
func TestUndrainNode(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 49800})
	ctx := context.Background()
	name := p.Agents()[0].Node()
	if _, err := p.Admin.DrainNode(ctx, name); err != nil {
		t.Fatal(err)
	}
	j := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	if cur, _ := p.Admin.Job(ctx, j.ID); cur.State != dspool.JobQueued {
		t.Fatalf("a job on a pool of one drained node: %s, want queued", cur.State)
	}
	c, err := p.Admin.UndrainNode(ctx, name)
	if err != nil || c.Node.State != dspool.NodeReady {
		t.Fatalf("undrain: got %+v %v, want ready", c, err)
	}
	if got := p.Wait(p.Admin, j.ID); got.State != dspool.JobSucceeded {
		t.Errorf("after undrain the job is %s, want succeeded", got.State)
	}
	if _, err := p.Admin.UndrainNode(ctx, "no-such-node"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("undrain an unknown node: %v, want not_found", err)
	}
	if findEvent(poolEvents(t, p, "default"), dspool.EventUndrain, "takes work again") == nil {
		t.Error("no node_undrained event")
	}
}

// TestStoppedAgentLeavesAtOnce: an agent stopped on purpose takes its node
// out of the pool at once, far sooner than the grace; its job is retried.
func TestStoppedAgentLeavesAtOnce(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{NodeGrace: time.Minute, UIDBase: 49900})
	a := p.AddAgent("default", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.WaitReady("default", 1)
	j := submit(t, p.Admin, dspool.JobSpec{Retries: 1, Command: []string{"sleep", "60"}})
	p.Eventually(10*time.Second, func() bool {
		cur, err := p.Admin.Job(context.Background(), j.ID)
		return err == nil && cur.StartedAt != nil
	}, "the job to start")
	began := time.Now()
	a.Stop()
	p.Eventually(10*time.Second, func() bool { return nodeByID(t, p, a.Node()).State == dspool.NodeGone }, "the node to leave")
	t.Logf("the node left %s after its agent was stopped (grace 1m)", time.Since(began).Round(time.Millisecond))
	cur, _ := p.Admin.Job(context.Background(), j.ID)
	if cur.State != dspool.JobQueued || cur.Attempt != 2 {
		t.Errorf("its job: %s at attempt %d, want queued for attempt 2", cur.State, cur.Attempt)
	}
	if findEvent(poolEvents(t, p, "default"), dspool.EventLeft, "stopped on purpose") == nil {
		t.Error("no node_left event")
	}
	if _, err := p.Admin.CancelJob(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
}

// TestLostNodeGoesAndComesBack: a node lost past node_gone_after is gone,
// with an event; when its link heals it comes back.
func TestLostNodeGoesAndComesBack(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{NodeGrace: time.Second, NodeGoneAfter: time.Second, UIDBase: 49950})
	a := p.AddAgent("default", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.WaitReady("default", 1)
	a.Link.Cut()
	p.Eventually(10*time.Second, func() bool { return nodeByID(t, p, a.Node()).State == dspool.NodeLost }, "the node to be lost")
	p.Eventually(10*time.Second, func() bool { return nodeByID(t, p, a.Node()).State == dspool.NodeGone }, "the lost node to be gone")
	// The event follows the node's change.
	p.Eventually(10*time.Second, func() bool { return findEvent(poolEvents(t, p, "default"), dspool.EventGone, "lost for 1s") != nil },
		"a node_gone event")
	a.Link.Restore()
	p.WaitReady("default", 1)
	if findEvent(poolEvents(t, p, "default"), dspool.EventReturned, a.Node()) == nil {
		t.Error("no node_returned event")
	}
}

// TestDeletePool: a pool with a node and a job is not deleted without
// --force; with it, the job is cancelled, the node removed and its agent
// cut off, and the pool's events stay readable.
func TestDeletePool(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49980})
	ctx := context.Background()
	applyPool(t, p, &dspool.Pool{Name: "extra", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}})
	a := p.AddAgent("extra", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.WaitReady("extra", 1)
	j := submit(t, p.Admin, dspool.JobSpec{Pool: "extra", Retries: 3, Command: []string{"sleep", "60"}})
	p.Eventually(10*time.Second, func() bool {
		cur, err := p.Admin.Job(ctx, j.ID)
		return err == nil && cur.StartedAt != nil
	}, "the job to start")

	_, err := p.Admin.DeletePool(ctx, "extra", false)
	if dspool.ErrorCode(err) != dspool.EConflict || !strings.Contains(err.Error(), "1 node (extra-") || !strings.Contains(err.Error(), "1 job (id "+strconv.FormatInt(j.ID, 10)+")") {
		t.Fatalf("delete a pool with a node and a job: got %v, want a conflict naming them", err)
	}
	d, err := p.Admin.DeletePool(ctx, "extra", true)
	if err != nil || len(d.Nodes) != 1 || len(d.Jobs) != 1 {
		t.Fatalf("forced delete: got %+v %v", d, err)
	}
	if got := p.Wait(p.Admin, j.ID); got.State != dspool.JobCancelled || !strings.Contains(got.Message, "pool extra was deleted") {
		t.Errorf("its job: %s %q, want cancelled saying why", got.State, got.Message)
	}
	if _, err := p.Admin.Pool(ctx, "extra"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("the pool after delete: %v, want not_found", err)
	}
	if n := nodeByID(t, p, a.Node()); n.State != dspool.NodeGone {
		t.Errorf("its node: %s, want gone", n.State)
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Error("the deleted pool's agent still runs: it should be cut off")
	}
	evs, err := p.Admin.PoolEvents(ctx, "extra", 0, 0)
	if err != nil || findEvent(evs, dspool.EventPoolDeleted, "deleted by") == nil {
		t.Errorf("events of the deleted pool: %+v %v, want a pool_deleted event", evs, err)
	}
	if !audited(t, p, dspool.AuditPoolDelete, dspool.AuditFailure) || !audited(t, p, dspool.AuditPoolDelete, dspool.AuditSuccess) {
		t.Error("the refused and the forced delete are not both in the audit log")
	}
}

// TestJoinTokenRevokedIsRefused: a revoked join token joins no node, and
// says so; listing shows ids and times, never secrets.
func TestJoinTokenRevokedIsRefused(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49990})
	ctx := context.Background()
	tok, err := p.Admin.NewJoinToken(ctx, "default", api.JoinTokenCreate{TTL: dspool.Duration(time.Hour)})
	if err != nil || tok.ExpiresAt == nil || time.Until(*tok.ExpiresAt) > time.Hour || time.Until(*tok.ExpiresAt) < 59*time.Minute {
		t.Fatalf("a token with --ttl 1h: got %+v %v", tok, err)
	}
	if _, err := p.Admin.RevokeJoinToken(ctx, "default", tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = (&api.Client{Server: p.URL}).Register(ctx, api.RegisterRequest{JoinToken: tok.Token, Name: "late"})
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("register with a revoked token: %v, want unauthorized saying it was revoked", err)
	}
	never, err := p.Admin.NewJoinToken(ctx, "default", api.JoinTokenCreate{Never: true})
	if err != nil || never.ExpiresAt != nil {
		t.Errorf("a token that never expires: %+v %v", never, err)
	}
	if _, err := p.Admin.NewJoinToken(ctx, "default", api.JoinTokenCreate{TTL: dspool.Duration(-time.Hour)}); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("a negative ttl: %v, want invalid", err)
	}
	l, err := p.Admin.JoinTokens(ctx, "default")
	if err != nil || len(l.Tokens) < 2 {
		t.Fatalf("list: %+v %v", l, err)
	}
	if !audited(t, p, dspool.AuditJoinTokenRevoke, dspool.AuditSuccess) {
		t.Error("the revocation is not in the audit log")
	}
}

// TestRevokeByNameTakesTheLiveNode: a name that a removed node had and a
// node that joined since has revokes the live one.
func TestRevokeByNameTakesTheLiveNode(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 49900})
	ctx := context.Background()
	old := p.Agents()[0]
	c, err := p.Admin.RemoveNode(ctx, old.Node(), false)
	if err != nil {
		t.Fatal(err)
	}
	oldNode := c.Node
	<-old.Done()
	twin := p.AddAgent("default", agent.Config{Name: oldNode.Name})
	p.WaitReady("default", 1)
	n, err := p.Admin.RevokeNode(ctx, oldNode.Name)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != twin.Node() || n.ID == old.Node() {
		t.Fatalf("revoke %s revoked node %s; want the live one, %s (not the removed %s)", oldNode.Name, n.ID, twin.Node(), old.Node())
	}
	select {
	case <-twin.Done():
	case <-time.After(10 * time.Second):
		t.Error("the revoked node's agent still runs: it should be cut off")
	}
}
