package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestLargeArrayStaysOutOfTheQueue: of an array of 20,000 tasks, the queue
// (ActiveJobs) holds one window; as its tasks end, Unpark tops it up; and
// the queue, a list's first page and a task's lookup read no whole table and
// none of the parked tasks.
func TestLargeArrayStaysOutOfTheQueue(t *testing.T) {
	ctx := context.Background()
	db, err := OpenAt(t, filepath.Join(t.TempDir(), "dspool.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, _ := db.CreateUser(ctx, "ann", false)
	spec := dspool.JobSpec{Command: []string{"true"}, Array: "0-19999%4"}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	a, _, err := db.SubmitArray(ctx, u.ID, &spec)
	if err != nil {
		t.Fatal(err)
	}
	active, err := db.ActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != arrayWindow {
		t.Fatalf("the queue holds %d tasks, want a window of %d", len(active), arrayWindow)
	}
	if n, _, err := db.Unpark(ctx); err != nil || n != 0 {
		t.Fatalf("unpark with a full window: %d %v", n, err)
	}
	// Half the window ends: the next unpark tops it up.
	var ids []int64
	for _, j := range active[:arrayWindow/2+1] {
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		if _, err := db.CancelJob(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n, parked, err := db.Unpark(ctx); err != nil || n != arrayWindow/2+1 || !parked {
		t.Fatalf("unpark after %d ended: %d %v", len(ids), n, err)
	}
	if active, _ = db.ActiveJobs(ctx); len(active) != arrayWindow {
		t.Fatalf("the queue after unpark: %d", len(active))
	}
	if sum, _ := db.Array(ctx, a.ID); sum.Counts[dspool.JobQueued] != 20000-len(ids) {
		t.Fatalf("parked tasks count as queued: %v", sum.Counts)
	}
	// Cancelling the array cancels the parked tasks too, and nothing is
	// left to unpark.
	if _, _, err := db.CancelArray(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if n, parked, err := db.Unpark(ctx); err != nil || n != 0 || parked {
		t.Fatalf("unpark after cancel: %d %v %v (want nothing left parked)", n, parked, err)
	}
	var parked int
	_ = db.r.QueryRow(`SELECT parked FROM job_arrays WHERE id = ?`, a.ID).Scan(&parked)
	if parked != 0 {
		t.Fatalf("the array still has %d parked after its cancel and an unpark", parked)
	}

	if OnPostgres() {
		return // the plans below are SQLite's
	}
	list := func(f JobFilter) string { q, _, _ := listQuery(f); return q }
	for name, q := range map[string]string{
		"ActiveJobs":            activeJobs,
		"a user's first page":   list(JobFilter{User: "ann", Arrays: true, Limit: 100}),
		"everyone's first page": list(JobFilter{Arrays: true, Limit: 100}),
		"an array's tasks":      list(JobFilter{Array: 1, Limit: 100}),
		"queued arrays":         list(JobFilter{User: "ann", Arrays: true, States: []dspool.JobState{dspool.JobQueued}, Limit: 100}),
	} {
		n := strings.Count(q, "?")
		args := make([]any, n)
		for i := range args {
			args[i] = 1
		}
		if name == "a user's first page" || name == "queued arrays" {
			args[0] = "ann"
		}
		plan := queryPlan(t, db, q, args...)
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN j") && !strings.Contains(step, "USING") || strings.Contains(step, "jobs_queue") {
				t.Errorf("%s reads every job or the parked ones (%s); its plan: %s", name, step, strings.Join(plan, "; "))
			}
		}
		t.Logf("%s: %s", name, strings.Join(plan, "; "))
	}
}
