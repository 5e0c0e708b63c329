package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

// TestCreateUserSkipsHeldUIDs: a new user's uid is one that no account on
// a live node, nor on the caller's machine, holds; a user named like an
// account left on a node gets its uid when it is free.
func TestCreateUserSkipsHeldUIDs(t *testing.T) {
	ctx := context.Background()
	db := openWith(t, store.Options{UIDBase: 30000})
	n := &dspool.Node{ID: "n1", Name: "n1", Pool: "p", State: dspool.NodeReady}
	if err := db.CreateNode(ctx, n, []byte("c1")); err != nil {
		t.Fatal(err)
	}
	n.Accounts = []dspool.HostAccount{{Name: "ghost", ID: 30000}, {Name: "lab", ID: 30002, Group: true}, {Name: "cy", ID: 30500}}
	if err := db.UpdateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	got, err := db.Node(ctx, "n1")
	if err != nil || len(got.Accounts) != 3 {
		t.Fatalf("node's accounts: got %+v %v, want the 3 stored", got, err)
	}
	host := []dspool.HostAccount{{Name: "local", ID: 30001}}
	tests := []struct {
		name string
		host []dspool.HostAccount
		want int
	}{
		{"ann", host, 30003},
		{"bob", nil, 30004},
		{"cy", nil, 30500},
		{"dee", nil, 30501},
	}
	for _, tt := range tests {
		u, err := db.CreateUserAvoiding(ctx, tt.name, false, tt.host)
		if err != nil {
			t.Fatal(err)
		}
		if u.UID != tt.want || u.GID != tt.want {
			t.Errorf("%s: got uid %d gid %d, want %d", tt.name, u.UID, u.GID, tt.want)
		}
	}
	r, err := db.UIDRange(ctx)
	if err != nil || r != (dspool.UIDRange{From: 30000, To: 31501}) {
		t.Errorf("UIDRange = %+v %v, want 30000-31501", r, err)
	}
}

// TestCreateUsersFromManyWriters: control planes on one store make users
// at once; each user gets a uid of its own, and none fails.
func TestCreateUsersFromManyWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	var dbs [4]*store.DB
	for i := range dbs {
		db, err := store.OpenAt(t, path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	const each = 25
	var wg sync.WaitGroup
	errs := make(chan error, len(dbs)*each)
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				if _, err := db.CreateUser(context.Background(), fmt.Sprintf("w%du%d", i, k), false); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	users, err := dbs[0].Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	uids := map[int]string{}
	for _, u := range users {
		if other, ok := uids[u.UID]; ok {
			t.Errorf("users %s and %s share uid %d", other, u.Name, u.UID)
		}
		uids[u.UID] = u.Name
	}
	if len(users) != len(dbs)*each {
		t.Errorf("%d users, want %d", len(users), len(dbs)*each)
	}
}
