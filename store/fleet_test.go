package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func putPool(t *testing.T, db *store.DB, name string) {
	t.Helper()
	p := &dspool.Pool{Name: name, Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPool(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// TestJoinTokenExpiryAndRevocation: a join token joins until it expires or
// is revoked, each refused with what to do; tokens made by the control
// plane itself never expire; revoking all leaves the revoked ones alone.
func TestJoinTokenExpiryAndRevocation(t *testing.T) {
	c := newClock()
	db := openAt(t, c)
	ctx := context.Background()
	putPool(t, db, "gpu")
	expires := c.now().Add(time.Hour)
	a, err := db.AddJoinToken(ctx, "gpu", []byte("a"), "ada", &expires)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateJoinToken(ctx, "gpu", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if pool, err := db.JoinTokenPool(ctx, []byte("a")); err != nil || pool != "gpu" {
		t.Fatalf("a fresh token: got %q %v, want gpu", pool, err)
	}
	c.advance(time.Hour)
	_, err = db.JoinTokenPool(ctx, []byte("a"))
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "dspool pool join-token gpu") {
		t.Errorf("an expired token: got %v, want unauthorized saying it expired and how to get another", err)
	}
	if _, err := db.JoinTokenPool(ctx, []byte("b")); err != nil {
		t.Errorf("a token without expiry, an hour on: %v", err)
	}

	revoked, err := db.RevokeJoinTokens(ctx, "gpu", a.ID)
	if err != nil || len(revoked) != 1 || revoked[0].RevokedAt == nil {
		t.Fatalf("revoke token %d: got %+v %v", a.ID, revoked, err)
	}
	if again, err := db.RevokeJoinTokens(ctx, "gpu", a.ID); err != nil || len(again) != 0 {
		t.Errorf("revoke it again: got %+v %v, want nothing revoked and no error", again, err)
	}
	if _, err := db.RevokeJoinTokens(ctx, "gpu", 999); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("revoke an unknown id: got %v, want not_found", err)
	}
	all, err := db.RevokeJoinTokens(ctx, "gpu", 0)
	if err != nil || len(all) != 1 || all[0].ID == a.ID {
		t.Fatalf("revoke all: got %+v %v, want the other token only", all, err)
	}
	_, err = db.JoinTokenPool(ctx, []byte("b"))
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "revoked at") {
		t.Errorf("a revoked token: got %v, want unauthorized saying it was revoked", err)
	}
	list, err := db.JoinTokens(ctx, "gpu")
	if err != nil || len(list) != 2 || list[0].CreatedBy != "ada" || list[0].ExpiresAt == nil || list[1].ExpiresAt != nil || list[1].RevokedAt == nil {
		t.Errorf("list: got %+v %v", list, err)
	}
}

// TestNodeLeavesComesBackOrIsRemoved: a node that left comes back with its
// credential; a removed one's credential is refused, saying so.
func TestNodeLeavesComesBackOrIsRemoved(t *testing.T) {
	db := openAt(t, newClock())
	ctx := context.Background()
	putPool(t, db, "gpu")
	n := &dspool.Node{ID: "n-1", Name: "gpu-1", Pool: "gpu", State: dspool.NodeReady, CreatedAt: time.Now()}
	if err := db.CreateNode(ctx, n, []byte("cred")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LeaveNode(ctx, "n-1", "its agent stopped"); err != nil {
		t.Fatal(err)
	}
	back, err := db.NodeByCredential(ctx, []byte("cred"))
	if err != nil || back.State != dspool.NodeGone {
		t.Fatalf("a node that left: got %+v %v, want it gone and its credential accepted", back, err)
	}
	back.State = dspool.NodeReady
	if err := db.UpdateNode(ctx, back); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := db.Nodes(ctx, "gpu", false); len(nodes) != 1 {
		t.Errorf("after it came back: %d nodes listed, want 1", len(nodes))
	}
	if _, err := db.RetireNode(ctx, "gpu", "gpu-1"); err != nil {
		t.Fatal(err)
	}
	_, err = db.NodeByCredential(ctx, []byte("cred"))
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "was removed from pool gpu") {
		t.Errorf("a removed node's credential: got %v, want unauthorized saying it was removed", err)
	}
}

// TestDeletePool: deleting a pool cancels its jobs, removes its nodes and
// drops its join tokens; its finished jobs stay.
func TestDeletePool(t *testing.T) {
	db := openAt(t, newClock())
	ctx := context.Background()
	putPool(t, db, "gpu")
	u, _ := db.CreateUser(ctx, "ada", false)
	spec := &dspool.JobSpec{Pool: "gpu", Command: []string{"true"}}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	j, _, err := db.SubmitJob(ctx, u.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateNode(ctx, &dspool.Node{ID: "n-1", Name: "gpu-1", Pool: "gpu", State: dspool.NodeReady, CreatedAt: time.Now()}, []byte("cred")); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateJoinToken(ctx, "gpu", []byte("tok")); err != nil {
		t.Fatal(err)
	}
	ended, nodes, err := db.DeletePool(ctx, "gpu", "pool gpu was deleted by root")
	if err != nil || len(ended) != 1 || len(nodes) != 1 {
		t.Fatalf("delete: got %v %v %v", ended, nodes, err)
	}
	got, _ := db.Job(ctx, j.ID)
	if got.State != dspool.JobCancelled || got.Message != "pool gpu was deleted by root" {
		t.Errorf("its queued job: %s %q, want cancelled with the reason", got.State, got.Message)
	}
	if _, err := db.Pool(ctx, "gpu"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("the pool after delete: %v, want not_found", err)
	}
	if _, err := db.NodeByCredential(ctx, []byte("cred")); dspool.ErrorCode(err) != dspool.EUnauthorized {
		t.Errorf("its node's credential: %v, want unauthorized", err)
	}
	if _, err := db.JoinTokenPool(ctx, []byte("tok")); dspool.ErrorCode(err) != dspool.EUnauthorized {
		t.Errorf("its join token: %v, want unauthorized", err)
	}
	if _, _, err := db.DeletePool(ctx, "gpu", ""); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("delete it again: %v, want not_found", err)
	}
}

// TestSingleUseJoinTokens: a token the autoscaler made for one machine
// joins one node, once, until it expires; it is not listed with the
// admins' tokens, and expired ones go when new ones are made.
func TestSingleUseJoinTokens(t *testing.T) {
	c := newClock()
	db := openAt(t, c)
	ctx := context.Background()
	putPool(t, db, "hpc")
	if err := db.AddSingleUseJoinTokens(ctx, "hpc", [][]byte{[]byte("m1"), []byte("m2")}, c.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if pool, err := db.TakeJoinToken(ctx, []byte("m1")); err != nil || pool != "hpc" {
		t.Fatalf("first use: got %q %v, want hpc", pool, err)
	}
	_, err := db.TakeJoinToken(ctx, []byte("m1"))
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "joins no other") {
		t.Fatalf("second use: got %v, want unauthorized: it joined a node already", err)
	}
	if list, err := db.JoinTokens(ctx, "hpc"); err != nil || len(list) != 0 {
		t.Fatalf("listed tokens: %+v %v, want none (single-use ones are not listed)", list, err)
	}
	c.advance(time.Hour)
	if _, err := db.TakeJoinToken(ctx, []byte("m2")); dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after its hour: got %v, want expired", err)
	}
	// A token an admin made joins many nodes, as before.
	if err := db.CreateJoinToken(ctx, "hpc", []byte("lab")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := db.TakeJoinToken(ctx, []byte("lab")); err != nil {
			t.Fatalf("use %d of a token for many: %v", i+1, err)
		}
	}
	if err := db.AddSingleUseJoinTokens(ctx, "hpc", [][]byte{[]byte("m3")}, c.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TakeJoinToken(ctx, []byte("m2")); err == nil || !strings.Contains(err.Error(), "not recognised") {
		t.Fatalf("an expired single-use token after new ones were made: %v, want it gone", err)
	}
}
