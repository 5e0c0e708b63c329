package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dspool/dspool/store"
)

// TestLeaseFencesTheLeaderThatLostIt: two control planes on one store
// take turns at the lease; each taking raises the term, and a store
// fenced at an old term writes nothing.
func TestLeaseFencesTheLeaderThatLostIt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	open := func() *store.DB {
		db, err := store.OpenAt(t, path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	const ttl = 300 * time.Millisecond

	la, led, err := a.Campaign(ctx, "a", "https://a:8443", ttl)
	if err != nil || !led || la.Term != 1 || la.Holder != "a" || la.Left <= 0 || la.Left > ttl {
		t.Fatalf("first campaign: %+v led %v %v; want a leading at term 1", la, led, err)
	}
	a.Fence(la.Term)
	if lb, led, err := b.Campaign(ctx, "b", "https://b:8443", ttl); err != nil || led || lb.Holder != "a" || lb.Address != "https://a:8443" {
		t.Fatalf("campaign while a leads: %+v led %v %v; want a's lease, not led", lb, led, err)
	}
	if _, err := a.CreateUser(ctx, "ann", false); err != nil {
		t.Fatalf("the leader writes: %v", err)
	}
	if err := a.Renew(ctx, la.Term, "a", ttl); err != nil {
		t.Fatal(err)
	}

	// a pauses past its lease; b takes it.
	time.Sleep(ttl + 50*time.Millisecond)
	lb, led, err := b.Campaign(ctx, "b", "https://b:8443", ttl)
	if err != nil || !led || lb.Term != 2 || lb.Holder != "b" {
		t.Fatalf("campaign after a's lease expired: %+v led %v %v; want b leading at term 2", lb, led, err)
	}
	b.Fence(lb.Term)
	if err := a.Renew(ctx, la.Term, "a", ttl); !errors.Is(err, store.ErrLostLead) {
		t.Errorf("a renews a lease b took: %v, want ErrLostLead", err)
	}
	if _, err := a.CreateUser(ctx, "bob", false); !errors.Is(err, store.ErrLostLead) {
		t.Errorf("a writes after b took the lead: %v, want ErrLostLead", err)
	}
	if _, err := b.CreateUser(ctx, "cid", false); err != nil {
		t.Errorf("b writes as the leader: %v", err)
	}
	if users, _ := b.Users(ctx); len(users) != 2 {
		t.Errorf("users: %d, want ann and cid only", len(users))
	}

	// b resigns: a takes the lead at once.
	if err := b.Resign(ctx, lb.Term, "b"); err != nil {
		t.Fatal(err)
	}
	la, led, err = a.Campaign(ctx, "a", "https://a:8443", ttl)
	if err != nil || !led || la.Term != 3 {
		t.Fatalf("campaign after b resigned: %+v led %v %v; want a leading at term 3", la, led, err)
	}
	if l, err := b.Leader(ctx); err != nil || l.Term != 3 || l.Holder != "a" {
		t.Errorf("Leader: %+v %v", l, err)
	}
}
