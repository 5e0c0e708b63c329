package server_test

import (
	"context"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
)

// TestQueueNames: in a pool that hides names, other users see a queued
// job's position and reason without its user and name; its owner and
// admins see them, and a pool that shows names shows them to everyone.
func TestQueueNames(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 50100})
	ctx := context.Background()
	ann, bob := newUser(t, p, "ann"), newUser(t, p, "bob")
	applyPool(t, p, &dspool.Pool{Name: "private", Provider: dspool.Provider(dspool.ProviderStatic), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, QueueNames: dspool.QueueNamesHidden})
	waiting := submit(t, ann.c, dspool.JobSpec{Pool: "private", Name: "secret-project", Command: []string{"true"}})
	held := submit(t, ann.c, dspool.JobSpec{Pool: "private", Name: "secret-too", Hold: true, Command: []string{"true"}})
	shown := submit(t, ann.c, dspool.JobSpec{Name: "open-project", Hold: true, Command: []string{"true"}})

	entries := func(c interface {
		Queue(context.Context, string) (*dspool.Queue, error)
	}, pool string) map[int64]dspool.QueueEntry {
		t.Helper()
		q, err := c.Queue(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		m := map[int64]dspool.QueueEntry{}
		for _, e := range q.Jobs {
			m[e.ID] = e
		}
		return m
	}
	byBob := entries(bob.c, "private")
	if e := byBob[waiting.ID]; e.User != "" || e.Name != "" || e.Position != 1 || e.Reason != dspool.WaitNoNode || e.Detail == "" {
		t.Errorf("bob sees ann's waiting job in the private pool as %+v; want no user or name, position 1, reason no_node with a detail", e)
	}
	if e := byBob[held.ID]; e.User != "" || e.Position != 0 || e.Reason != dspool.WaitHeld {
		t.Errorf("bob sees ann's held job as %+v; want no user, no position, reason held", e)
	}
	if _, ok := byBob[shown.ID]; ok {
		t.Errorf("the queue of pool private lists job %d of pool default", shown.ID)
	}
	for who, m := range map[string]map[int64]dspool.QueueEntry{"ann": entries(ann.c, "private"), "an admin": entries(p.Admin, "")} {
		if e := m[waiting.ID]; e.User != "ann" || e.Name != "secret-project" {
			t.Errorf("%s sees ann's job as %+v; want her name and the job's", who, e)
		}
	}
	if e := entries(bob.c, "")[shown.ID]; e.User != "ann" || e.Name != "open-project" || e.Pool != "default" {
		t.Errorf("bob sees ann's job in pool default as %+v; want her name, as the pool shows names", e)
	}
	if _, err := bob.c.Queue(ctx, "nosuch"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("the queue of a pool that does not exist: got %v, want not_found", err)
	}

	// A pool hides names: dspool share shows bob no other user's.
	for who, c := range map[string]interface {
		Share(context.Context) (*dspool.ShareReport, error)
	}{"bob": bob.c, "an admin": p.Admin} {
		rep, err := c.Share(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Users) != 1 || !rep.Users[0].Active || rep.Users[0].Target != 1 || rep.Users[0].Factor != 1 {
			t.Fatalf("%s's share report: %+v; want one user with work, all of the target and a factor of 1", who, rep.Users)
		}
		if name, want := rep.Users[0].Name, map[string]string{"bob": "", "an admin": "ann"}[who]; name != want {
			t.Errorf("%s sees ann's share as %q, want %q", who, name, want)
		}
	}
}
