package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
)

func TestPruneByRetention(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(dir, "dspool.db"), store.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	export := filepath.Join(dir, "audit.jsonl")
	srv := server.New(server.Config{Store: db, Now: clock, Retention: dspool.Retention{
		Sessions: dspool.KeepForever, Audit: dspool.Age(30 * 24 * time.Hour), AuditExport: export}})
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	// More old jobs than one batch takes, a session, events and audit
	// entries; then the same, 91 days on.
	cancelled := func(n int) {
		for range n {
			spec := dspool.JobSpec{Command: []string{"true"}}
			_ = spec.Normalize()
			j, _, err := db.SubmitJob(ctx, u.ID, &spec)
			if err == nil {
				_, err = db.CancelJob(ctx, j.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	rest := func(tag string) {
		if err := db.CreateSession(ctx, &dspool.Session{ID: "s-" + tag, User: "ada", Kind: "ssh", Pool: "default", Node: "n", State: "active", StartedAt: now, LastActivity: now}); err != nil {
			t.Fatal(err)
		}
		if err := db.EndSession(ctx, store.SessionActivity{ID: "s-" + tag, LastActivity: now}, "logged out", now); err != nil {
			t.Fatal(err)
		}
		if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "default", Kind: "scale_out", Message: tag}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := db.AddAudit(ctx, dspool.AuditEntry{Actor: "ada", Action: dspool.AuditLoginSSH, Outcome: dspool.AuditSuccess, Detail: tag}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancelled(620)
	rest("old")
	now = now.Add(91 * 24 * time.Hour)
	cancelled(2)
	rest("new")

	p, err := srv.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (server.Pruned{Jobs: 620, Events: 1, Audit: 3}); p != want {
		t.Errorf("pruned %+v, want %+v", p, want)
	}
	if jobs, _ := db.ListJobs(ctx, store.JobFilter{}); len(jobs) != 2 {
		t.Errorf("%d jobs left, want the 2 new", len(jobs))
	}
	if ss, _ := db.Sessions(ctx, store.SessionFilter{}); len(ss) != 2 {
		t.Errorf("%d sessions left, want both (kept forever)", len(ss))
	}
	f, err := os.Open(export)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var exported []dspool.AuditEntry
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var e dspool.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		exported = append(exported, e)
	}
	if len(exported) != 3 || exported[0].Detail != "old" || exported[0].ID >= exported[2].ID {
		t.Errorf("exported %+v; want the 3 old entries in order", exported)
	}
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Errorf("export mode %v, want 0600", fi.Mode().Perm())
	}
	es, _ := db.Audit(ctx, store.AuditFilter{})
	last := es[len(es)-1]
	if len(es) != 4 || last.Action != dspool.AuditAuditPrune || last.Actor != dspool.AuditSystem || last.Detail != "3 entries from before 2030-07-01T12:00:00Z, exported to "+export {
		t.Errorf("audit after the prune: %+v; want the 3 new entries and the prune's own", last)
	}

	// Nothing more to do; and a retention of never prunes nothing.
	if p, err := srv.Prune(ctx); err != nil || p != (server.Pruned{}) {
		t.Errorf("second prune: %+v %v, want nothing", p, err)
	}
	now = now.Add(365 * 24 * time.Hour)
	keep := server.New(server.Config{Store: db, Now: clock, Retention: dspool.Retention{Jobs: dspool.KeepForever,
		Sessions: dspool.KeepForever, Events: dspool.KeepForever}})
	if p, err := keep.Prune(ctx); err != nil || p != (server.Pruned{}) {
		t.Errorf("prune with every age never: %+v %v, want nothing", p, err)
	}
}
