package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/sqlite"
)

// hubServer is a server on a real store with a ready node of pool default
// (not started: the tests drive its hub by hand).
func hubServer(t *testing.T) (*Server, *dspool.Node) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dspool.db"), sqlite.Options{UIDBase: 47000, Reserve: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p := &dspool.Pool{Name: dspool.DefaultPool, Provider: dspool.ProviderStatic, Node: dspool.NodeSize{CPUs: 4000, Memory: 8 << 30}, Count: 1}
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

// TestReplacedConnectionLeavesTheNewOnesSessions: the end of a connection
// that a newer one of its node replaced does not end the sessions opened
// since, over the newer one.
func TestReplacedConnectionLeavesTheNewOnesSessions(t *testing.T) {
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
	l, err := s.placeSession(ctx, user, pool, "test", dspool.SessionSSH)
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
	default:
		t.Error("the end of the node's current connection left its session open")
	}
}
