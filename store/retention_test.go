package store_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

// pruneAll calls prune a batch at a time until a batch comes short, and
// returns how many went in all.
func pruneAll(t *testing.T, prune func(limit int) (int, error)) int {
	t.Helper()
	total := 0
	for {
		n, err := prune(2)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < 2 {
			return total
		}
	}
}

func TestPrune(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.OpenAt(t, path, store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	submit := func() *dspool.Job {
		t.Helper()
		spec := dspool.JobSpec{Command: []string{"true"}}
		_ = spec.Normalize()
		j, _, err := db.SubmitJob(ctx, u.ID, &spec)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	old := now
	// Old: three cancelled, one that ran (with its attempt), one queued
	// and one running (never pruned, however old).
	var oldJobs []int64
	for range 3 {
		j := submit()
		if _, err := db.CancelJob(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		oldJobs = append(oldJobs, j.ID)
	}
	ran := submit()
	running := submit()
	if _, err := db.Place(ctx, []store.Placement{{Job: ran.ID, Attempt: 1, Node: "n-1"}, {Job: running.ID, Attempt: 1, Node: "n-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishAttempt(ctx, ran.ID, 1, "n-1", dspool.AttemptResult{ExitCode: new(int)}, old); err != nil {
		t.Fatal(err)
	}
	oldJobs = append(oldJobs, ran.ID)
	queued := submit()
	for _, s := range []*dspool.Session{
		{ID: "s-old", User: "ada", Kind: "ssh", Pool: "default", Node: "n-1", State: "active", StartedAt: old, LastActivity: old},
		{ID: "s-open", User: "ada", Kind: "ssh", Pool: "default", Node: "n-1", State: "active", StartedAt: old, LastActivity: old},
	} {
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.EndSession(ctx, store.SessionActivity{ID: "s-old", LastActivity: old}, "logged out", old); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "default", At: old, Kind: "scale_out", Message: "old"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := db.AddAudit(ctx, dspool.AuditEntry{At: old.Add(time.Duration(i)), Actor: "ada", Action: dspool.AuditLoginSSH, Outcome: dspool.AuditSuccess}); err != nil {
			t.Fatal(err)
		}
	}

	// A day later, the same again, which stays.
	now = now.Add(24 * time.Hour)
	newer := submit()
	if _, err := db.CancelJob(ctx, newer.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateSession(ctx, &dspool.Session{ID: "s-new", User: "ada", Kind: "ssh", Pool: "default", Node: "n-1", State: "active", StartedAt: now, LastActivity: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.EndSession(ctx, store.SessionActivity{ID: "s-new", LastActivity: now}, "logged out", now); err != nil {
		t.Fatal(err)
	}
	if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "default", Kind: "scale_out", Message: "new"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddAudit(ctx, dspool.AuditEntry{Actor: "ada", Action: dspool.AuditLoginSSH, Outcome: dspool.AuditSuccess}); err != nil {
		t.Fatal(err)
	}

	before := old.Add(time.Hour)
	if n := pruneAll(t, func(l int) (int, error) { return db.PruneJobs(ctx, before, l) }); n != len(oldJobs) {
		t.Errorf("pruned %d jobs, want %d", n, len(oldJobs))
	}
	jobs, _ := db.ListJobs(ctx, store.JobFilter{})
	var left []int64
	for _, j := range jobs {
		left = append(left, j.ID)
	}
	if want := []int64{newer.ID, queued.ID, running.ID}; !slices.Equal(left, want) {
		t.Errorf("jobs left: %v, want %v", left, want)
	}
	if as, err := db.Attempts(ctx, ran.ID); err != nil || len(as) != 0 {
		t.Errorf("attempts of a pruned job: %v %v", as, err)
	}
	if as, _ := db.Attempts(ctx, running.ID); len(as) != 1 {
		t.Errorf("attempts of the running job: %v, want its one", as)
	}

	if n := pruneAll(t, func(l int) (int, error) { return db.PruneSessions(ctx, before, l) }); n != 1 {
		t.Errorf("pruned %d sessions, want 1", n)
	}
	ss, _ := db.Sessions(ctx, store.SessionFilter{})
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	if slices.Sort(ids); !slices.Equal(ids, []string{"s-new", "s-open"}) {
		t.Errorf("sessions left: %v, want s-new and s-open", ids)
	}

	if n := pruneAll(t, func(l int) (int, error) { return db.PrunePoolEvents(ctx, before, l) }); n != 3 {
		t.Errorf("pruned %d events, want 3", n)
	}
	if evs, _ := db.PoolEvents(ctx, "default", time.Time{}, 0); len(evs) != 1 || evs[0].Message != "new" {
		t.Errorf("events left: %+v, want the new one", evs)
	}

	// The audit log: the oldest entries come in time order, a batch at a
	// time, and go only when named.
	es, err := db.OldAudit(ctx, before, 3)
	if err != nil || len(es) != 3 || !es[0].At.Equal(old) || !es[2].At.Equal(old.Add(2)) {
		t.Fatalf("old audit entries: %+v %v; want the 3 oldest, oldest first", es, err)
	}
	if n, err := db.PruneAudit(ctx, before, []int64{es[0].ID, es[1].ID}); err != nil || n != 2 {
		t.Fatalf("prune the audit log: %d %v", n, err)
	}
	if n, err := db.PruneAudit(ctx, before, nil); err != nil || n != 0 {
		t.Fatalf("prune nothing: %d %v", n, err)
	}
	rest, _ := db.Audit(ctx, store.AuditFilter{})
	if len(rest) != 4 || rest[0].ID != es[2].ID {
		t.Errorf("audit left: %+v; want 4 from entry %d", rest, es[2].ID)
	}
	// Newer entries still cannot go, nor the mark move back, whoever asks.
	raw := store.RawAt(t, path)
	for _, q := range []string{
		`DELETE FROM audit`,
		`UPDATE meta SET value = '0' WHERE key = 'audit_pruned_before'`,
		`UPDATE meta SET value = '999999999999999999' WHERE key = 'audit_pruned_before'; DELETE FROM meta WHERE key = 'audit_pruned_before'`,
		`DELETE FROM meta WHERE key = 'audit_pruned_before'`,
	} {
		if _, err := raw.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the trigger's refusal", q, err)
		}
	}
	if _, err := db.PruneAudit(ctx, old, []int64{rest[3].ID}); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.Audit(ctx, store.AuditFilter{}); len(again) != 4 {
		t.Errorf("pruning an entry newer than its time removed it: %d left, want 4", len(again))
	}
}

// TestPrunedEventsCountedAgain: a pool still keeps its newest events after
// some were pruned (the cached count is read again).
func TestPrunedEventsCountedAgain(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.OpenAt(t, path, store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	// A full pool of events, 10 of them old, written in one go.
	raw := store.RawAt(t, path)
	if _, err := raw.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO pool_events (pool, at, kind, message) SELECT 'p', CASE WHEN i <= 10 THEN CAST(? AS BIGINT) ELSE CAST(? AS BIGINT) END, 'waiting', 'm' FROM n`,
		dspool.MaxPoolEvents-1, now.Add(-48*time.Hour).UnixNano(), now.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "p", Kind: "waiting", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	if n, err := db.PrunePoolEvents(ctx, now.Add(-time.Hour), 100); err != nil || n != 10 {
		t.Fatalf("prune: %d %v", n, err)
	}
	for range 5 {
		if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "p", Kind: "waiting", Message: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	if evs, _ := db.PoolEvents(ctx, "p", time.Time{}, dspool.MaxPoolEvents); len(evs) != dspool.MaxPoolEvents-5 {
		t.Errorf("%d events kept, want %d", len(evs), dspool.MaxPoolEvents-5)
	}
}
