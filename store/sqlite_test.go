package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func open(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.OpenAt(t, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSubmitConcurrentIsDurableAndIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.OpenAt(t, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make([]int64, 200)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every key is submitted twice: the second must return the first.
			key := fmt.Sprintf("k%d", i%100)
			spec := dspool.JobSpec{Command: []string{"true"}, IdempotencyKey: key}
			if err := spec.Normalize(); err != nil {
				t.Error(err)
				return
			}
			j, _, err := db.SubmitJob(ctx, u.ID, &spec)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = j.ID
		}()
	}
	wg.Wait()
	for i := 0; i < 100; i++ {
		if ids[i] != ids[i+100] {
			t.Errorf("key k%d gave jobs %d and %d", i, ids[i], ids[i+100])
		}
	}
	db.Close()
	// Reopen: everything acknowledged is there.
	db2 := open(t, path)
	jobs, err := db2.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 100 {
		t.Errorf("after reopening: %d jobs, want 100", len(jobs))
	}
}

func TestFencedTransitions(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	u, _ := db.CreateUser(ctx, "alice", false)
	spec := dspool.JobSpec{Command: []string{"true"}, Retries: 1}
	_ = spec.Normalize()
	j, _, err := db.SubmitJob(ctx, u.ID, &spec)
	if err != nil {
		t.Fatal(err)
	}
	placed, err := db.Place(ctx, []store.Placement{{Job: j.ID, Attempt: 1, Node: "n1"}})
	if err != nil || len(placed) != 1 {
		t.Fatalf("place: %v %v", placed, err)
	}
	// A placement for an attempt that is no longer queued is skipped.
	if again, _ := db.Place(ctx, []store.Placement{{Job: j.ID, Attempt: 1, Node: "n2"}}); len(again) != 0 {
		t.Errorf("placed a running job again: %v", again)
	}
	now := time.Now()
	if _, err := db.FinishAttempt(ctx, j.ID, 1, "n2", dspool.AttemptResult{}, now); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("report from the wrong node: got %v, want conflict", err)
	}
	lost, err := db.LoseNode(ctx, "n1", "gone")
	if err != nil || len(lost) != 1 || lost[0].State != dspool.JobQueued || lost[0].Attempt != 2 {
		t.Fatalf("lose node: got %+v %v, want the job queued at attempt 2", lost, err)
	}
	code := 0
	if _, err := db.FinishAttempt(ctx, j.ID, 1, "n1", dspool.AttemptResult{ExitCode: &code}, now); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("stale attempt 1 report after requeue: got %v, want conflict", err)
	}
	if _, err := db.Place(ctx, []store.Placement{{Job: j.ID, Attempt: 2, Node: "n2"}}); err != nil {
		t.Fatal(err)
	}
	done, err := db.FinishAttempt(ctx, j.ID, 2, "n2", dspool.AttemptResult{ExitCode: &code}, now)
	if err != nil || done.State != dspool.JobSucceeded {
		t.Fatalf("finish attempt 2: %v %v", done, err)
	}
	as, _ := db.Attempts(ctx, j.ID)
	if len(as) != 2 || as[0].Reason != dspool.ReasonNodeLost || as[1].ExitCode == nil {
		t.Errorf("attempts: %+v", as)
	}
}

func TestRefusesForeignOrDamagedFile(t *testing.T) {
	store.SkipOnPostgres(t, "files; TestRefusesForeignDatabase is PostgreSQL's")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := store.OpenAt(t, junk, store.Options{})
	if err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("opening a non-database: got %v, want an error naming %s", err, junk)
	}
	before, _ := os.ReadFile(junk)
	if !strings.HasPrefix(string(before), "not a database") {
		t.Error("the foreign file was modified")
	}
}

func TestApplyReportsSkipsStale(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	u, _ := db.CreateUser(ctx, "alice", false)
	var ids []int64
	for i := 0; i < 2; i++ {
		spec := dspool.JobSpec{Command: []string{"true"}}
		_ = spec.Normalize()
		j, _, err := db.SubmitJob(ctx, u.ID, &spec)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if _, err := db.Place(ctx, []store.Placement{{Job: ids[0], Attempt: 1, Node: "n1"}, {Job: ids[1], Attempt: 1, Node: "n2"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	code := 0
	changed, err := db.ApplyReports(ctx, "n1", []store.Report{
		{Job: ids[0], Attempt: 1, StartedAt: &now, Result: &dspool.AttemptResult{ExitCode: &code}, At: now},
		{Job: ids[1], Attempt: 1, StartedAt: &now, Result: &dspool.AttemptResult{ExitCode: &code}, At: now}, // n2's job: stale
		{Job: 999, Attempt: 1, StartedAt: &now}, // unknown
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0] != ids[0] {
		t.Errorf("changed = %v, want only job %d", changed, ids[0])
	}
	a, _ := db.Job(ctx, ids[0])
	b, _ := db.Job(ctx, ids[1])
	if a.State != dspool.JobSucceeded || a.StartedAt == nil || b.State != dspool.JobRunning || b.StartedAt != nil {
		t.Errorf("got %s (started %v) and %s (started %v), want succeeded/started and running/not started", a.State, a.StartedAt, b.State, b.StartedAt)
	}
}
