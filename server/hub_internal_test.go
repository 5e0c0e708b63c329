package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/store"
)

// hubServer is a server on a real store with a ready node of pool default
// (not started: the tests drive its hub by hand).
func hubServer(t *testing.T) (*Server, *dspool.Node) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "dspool.db"), store.Options{UIDBase: 47750, Reserve: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p := &dspool.Pool{Name: dspool.DefaultPool, Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 4000, Memory: 8 << 30}, Count: 1}
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	n := &dspool.Node{ID: "n-hubtest", Name: "hubtest", Pool: dspool.DefaultPool, State: dspool.NodeReady,
		Inventory: dspool.Inventory{CPUs: 4000, Memory: 8 << 30, GPUs: []dspool.GPU{}}}
	if err := db.CreateNode(ctx, n, []byte("hash")); err != nil {
		t.Fatal(err)
	}
	return New(Config{Store: db}), n
}

// testConn is a connection of node n whose calls to the agent fail.
func testConn(n *dspool.Node) *agentConn {
	return &agentConn{node: n.ID, pool: n.Pool, state: dspool.NodeReady, inv: n.Inventory,
		client: &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no agent in this test")
		}}}}
}

// TestEndedConnectionsLeaveTheNodesSessions: the end of a connection that a
// newer one of its node replaced does not end the sessions opened since,
// over the newer one; nor does the end of the current one: the agent keeps
// its sessions, which end only when the node is lost past its grace.
func TestEndedConnectionsLeaveTheNodesSessions(t *testing.T) {
	s, n := hubServer(t)
	ctx := context.Background()
	user, err := s.db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := s.db.Pool(ctx, dspool.DefaultPool)
	if err != nil {
		t.Fatal(err)
	}
	old, current := testConn(n), testConn(n)
	s.hub.attach(old)
	if replaced := s.hub.attach(current); replaced != old {
		t.Fatalf("attach replaced %p, want the old connection %p", replaced, old)
	}
	z, _ := pool.SessionSize("")
	l, err := s.placeSession(ctx, user, pool, z, "test", dspool.SessionSSH)
	if err != nil {
		t.Fatal(err)
	}
	if l.Node() != n.ID {
		t.Fatalf("the session went to %s, want %s", l.Node(), n.ID)
	}
	s.hub.detach(old, n.Name) // the replaced connection ends late
	select {
	case <-l.Done():
		t.Fatalf("the end of the replaced connection ended a session of the new one: %s", l.Reason())
	default:
	}
	s.hub.detach(current, n.Name)
	select {
	case <-l.Done():
		t.Errorf("the end of the node's current connection ended its session: %s", l.Reason())
	default:
	}
}

// TestHeartbeatKeepsADrain: a drain that lands while a heartbeat of the
// node is under way (one the drain cannot pause: of a connection being
// replaced) is not undone by the heartbeat writing back what it read.
func TestHeartbeatKeepsADrain(t *testing.T) {
	s, n := hubServer(t)
	ctx := context.Background()
	ac := testConn(n) // not the node's current connection
	rng, err := s.db.UIDRange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for i := 0; i < 100; i++ {
		cur, err := s.db.Node(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		cur.State = dspool.NodeReady
		if err := s.db.UpdateNode(ctx, cur); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			// A change the heartbeat writes (its message), with accounts
			// to look at between its read and its write.
			hb := &api.Heartbeat{State: dspool.NodeReady, Message: fmt.Sprint("beat ", i), Inventory: n.Inventory,
				Accounts: &api.AccountReport{Range: rng, Accounts: []dspool.HostAccount{}}}
			if _, err := s.hub.heartbeat(ctx, ac, hb); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, _, err := s.drainNode(ctx, n.ID, false); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if got, _ := s.db.Node(ctx, n.ID); got.State != dspool.NodeDraining {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of 100 drains that raced a heartbeat were lost: the heartbeat wrote back the state it had read", lost)
	}
}

// TestAReconnectingNodeStartsAPass: the first report on a node's new
// connection starts a scheduling pass even when nothing about the node
// changed (after a restart of the control plane its row is as it was), so
// that work queued while it was away starts then, not at the next periodic
// pass; later reports that change nothing start none.
func TestAReconnectingNodeStartsAPass(t *testing.T) {
	s, n := hubServer(t)
	ctx := context.Background()
	kicked := func() bool {
		select {
		case <-s.kick:
			return true
		default:
			return false
		}
	}
	hb := &api.Heartbeat{State: dspool.NodeReady, Inventory: n.Inventory}
	first := testConn(n)
	s.hub.attach(first)
	for range 2 {
		kicked()
		if _, err := s.hub.heartbeat(ctx, first, hb); err != nil {
			t.Fatal(err)
		}
	}
	if kicked() {
		t.Errorf("a second report that changed nothing started a scheduling pass, want none")
	}
	again := testConn(n)
	s.hub.attach(again)
	if _, err := s.hub.heartbeat(ctx, again, hb); err != nil {
		t.Fatal(err)
	}
	if !kicked() {
		t.Errorf("the first report on the node's new connection started no scheduling pass: work queued while it was away waits for the periodic one")
	}
}

// TestAReportBeforeTheSessionsAreTakenUp: a node whose first report comes
// before the control plane has taken up the sessions of the previous run
// (its agent reconnected that fast) has them confirmed as soon as they are
// taken up, not at its next report; a session it reports that the store
// has not active is ended on the node, as a heartbeat's reply would.
func TestAReportBeforeTheSessionsAreTakenUp(t *testing.T) {
	s, n := hubServer(t)
	ctx := context.Background()
	if _, err := s.db.CreateUser(ctx, "ada", false); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := s.db.CreateSession(ctx, &dspool.Session{ID: "s-kept", User: "ada", Kind: dspool.SessionSSH, Pool: dspool.DefaultPool,
		Node: n.ID, NodeName: n.Name, CPUs: 100, Memory: 64 << 20, State: dspool.SessionActive, Connections: 1, StartedAt: now, LastActivity: now}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan string, 1)
	ac := testConn(n)
	ac.client = &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		var end api.SessionEnd
		if r.URL.Path == "/sessions/end" && json.NewDecoder(r.Body).Decode(&end) == nil {
			ended <- end.Session
		}
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})}
	s.hub.attach(ac)
	hb := &api.Heartbeat{State: dspool.NodeReady, Inventory: n.Inventory, Sessions: []api.HostedSession{{Session: "s-kept"}, {Session: "s-unknown"}}}
	reply, err := s.hub.heartbeat(ctx, ac, hb)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.EndSessions) > 0 {
		t.Errorf("a report before the sessions were taken up was told to end %v, want nothing judged yet", reply.EndSessions)
	}
	s.recoverSessions(ctx)
	s.sessions.mu.Lock()
	l := s.sessions.live["s-kept"]
	pending := l != nil && l.pending
	s.sessions.mu.Unlock()
	if l == nil {
		t.Fatal("session s-kept was not taken up")
	}
	if pending {
		t.Errorf("session s-kept is still pending once taken up: its node's earlier report was not judged")
	}
	select {
	case id := <-ended:
		if id != "s-unknown" {
			t.Errorf("the node was told to end %s, want s-unknown", id)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the node was not told to end s-unknown, a session the store does not have active")
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDrainWhileAConnectionIsSetUp: a node drained while its agent
// (re)connects, after the connection read the node and before it was
// attached, takes no work on the new connection; and a change that reached
// the attached connection is not undone by an older state of the store.
func TestDrainWhileAConnectionIsSetUp(t *testing.T) {
	s, n := hubServer(t)
	ctx := context.Background()
	ac := testConn(n) // made from the node as read before the drain: ready
	if _, _, err := s.drainNode(ctx, n.ID, false); err != nil {
		t.Fatal(err)
	}
	s.hub.attach(ac)
	s.hub.settle(ctx, ac)
	if _, ok := s.hub.ready()[n.ID]; ok {
		t.Fatal("a node drained while its connection was set up takes work over it")
	}

	// The store still says draining, as it did when the next connection
	// read it; the connection has since been told ready.
	bc := testConn(n)
	s.hub.attach(bc)
	s.hub.setState(n.ID, dspool.NodeReady)
	s.hub.settle(ctx, bc)
	if _, ok := s.hub.ready()[n.ID]; !ok {
		t.Fatal("the store's older state undid a change made on the attached connection")
	}
}
