package store_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func submitSpec(t *testing.T, db *store.DB, user int64, s dspool.JobSpec) *dspool.Job {
	t.Helper()
	if len(s.Command) == 0 {
		s.Command = []string{"true"}
	}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	var j *dspool.Job
	var err error
	if s.Tasks != nil {
		j, _, err = db.SubmitArray(context.Background(), user, &s)
	} else {
		j, _, err = db.SubmitJob(context.Background(), user, &s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// run places job id and ends its attempt with exit code.
func run(t *testing.T, db *store.DB, j *dspool.Job, code int) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.Place(ctx, []store.Placement{{Job: j.ID, Attempt: j.Attempt, Node: "n"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishAttempt(ctx, j.ID, j.Attempt, "n", dspool.AttemptResult{ExitCode: &code}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestArrays(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	ann, _ := db.CreateUser(ctx, "ann", false)
	bob, _ := db.CreateUser(ctx, "bob", false)
	a := submitSpec(t, db, ann.ID, dspool.JobSpec{Array: "3,5-7%2", Sweep: []map[string]string{{"X": "a"}, {"X": "b"}, {"X": "c"}, {"X": "d"}}, Env: map[string]string{"Y": "y"}})
	if a.ArrayID != a.ID || *a.ArrayIndex != 3 {
		t.Fatalf("first task: array %d index %v, want the array named by it and index 3", a.ArrayID, *a.ArrayIndex)
	}
	task, err := db.Task(ctx, a.ID, 6)
	if err != nil || task.Env["X"] != "c" || task.Env["Y"] != "y" || task.ArrayID != a.ID {
		t.Fatalf("task 6: %+v %v, want the third row's X and the job's Y", task, err)
	}
	sum, err := db.Array(ctx, a.ID)
	if err != nil || sum.Tasks != 4 || sum.MaxRunning != 2 || sum.Indices != "3,5-7%2" || sum.Counts[dspool.JobQueued] != 4 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	active, _ := db.ActiveJobs(ctx)
	if len(active) != 4 || active[0].Array != a.ID || active[0].ArrayMax != 2 {
		t.Fatalf("active: %+v", active)
	}
	// Lists show the array as its first task, or its tasks.
	l, _ := db.ListJobs(ctx, store.JobFilter{Arrays: true})
	if len(l) != 1 || l[0].ID != a.ID {
		t.Fatalf("collapsed list: %d jobs", len(l))
	}
	if l, _ := db.ListJobs(ctx, store.JobFilter{Array: a.ID}); len(l) != 4 {
		t.Fatalf("tasks: %d, want 4", len(l))
	}
	run(t, db, a, 0)
	if l, _ := db.ListJobs(ctx, store.JobFilter{Arrays: true, States: []dspool.JobState{dspool.JobQueued}}); len(l) != 1 {
		t.Fatalf("an array with queued tasks, its first done, listed as queued: %d", len(l))
	}
	// Another user cannot wait for it.
	s := dspool.JobSpec{Command: []string{"true"}, After: "ok:" + itoa(a.ID)}
	_ = s.Normalize()
	if _, _, err := db.SubmitJob(ctx, bob.ID, &s); dspool.ErrorCode(err) != dspool.EInvalid || !strings.Contains(err.Error(), "no job") {
		t.Fatalf("bob after ann's array: %v, want refused as unknown", err)
	}
	queued, running, err := db.CancelArray(ctx, a.ID)
	if err != nil || len(queued) != 3 || len(running) != 0 {
		t.Fatalf("cancel: %d queued %d running %v", len(queued), len(running), err)
	}
	if sum, _ := db.Array(ctx, a.ID); !sum.Done() || sum.State() != dspool.JobCancelled {
		t.Fatalf("after cancel: %+v", sum)
	}
}

func TestDependencies(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	u, _ := db.CreateUser(ctx, "ann", false)
	// A diamond: top -> left, right -> bottom; and a job for when top fails.
	top := submitSpec(t, db, u.ID, dspool.JobSpec{})
	left := submitSpec(t, db, u.ID, dspool.JobSpec{After: "ok:" + itoa(top.ID)})
	right := submitSpec(t, db, u.ID, dspool.JobSpec{Array: "0-1", After: itoa(top.ID)})
	bottom := submitSpec(t, db, u.ID, dspool.JobSpec{After: "ok:" + itoa(left.ID) + ",ok:" + itoa(right.ID)})
	onFail := submitSpec(t, db, u.ID, dspool.JobSpec{After: "notok:" + itoa(top.ID)})
	runnable := func() []int64 {
		active, _ := db.ActiveJobs(ctx)
		var ids []int64
		for _, j := range active {
			if j.State == dspool.JobQueued {
				ids = append(ids, j.ID)
			}
		}
		return ids
	}
	if got := runnable(); len(got) != 1 || got[0] != top.ID {
		t.Fatalf("runnable before anything ran: %v, want only %d", got, top.ID)
	}
	if res, err := db.ResolveDeps(ctx); err != nil || len(res.Released)+len(res.Ended) != 0 {
		t.Fatalf("resolve with nothing ended: %+v %v", res, err)
	}
	run(t, db, top, 0)
	res, err := db.ResolveDeps(ctx)
	if err != nil || len(res.Released) != 2 || len(res.Ended) != 1 || res.Ended[0] != onFail.ID {
		t.Fatalf("after top succeeded: %+v %v, want left and right released, the notok job ended", res, err)
	}
	j, _ := db.Job(ctx, onFail.ID)
	if j.State != dspool.JobCancelled || j.Reason != dspool.ReasonDependency || !strings.Contains(j.Message, "job "+itoa(top.ID)+" succeeded") {
		t.Fatalf("the notok job: %s %s %q", j.State, j.Reason, j.Message)
	}
	if got := runnable(); len(got) != 3 {
		t.Fatalf("runnable after top: %v, want left and the two tasks of right", got)
	}
	run(t, db, left, 0)
	t0, _ := db.Task(ctx, right.ID, 0)
	run(t, db, t0, 3) // one task of right fails: bottom can never run
	res, err = db.ResolveDeps(ctx)
	if err != nil || len(res.Ended) != 1 || res.Ended[0] != bottom.ID {
		t.Fatalf("after a task of right failed: %+v %v, want bottom ended", res, err)
	}
	j, _ = db.Job(ctx, bottom.ID)
	if j.Reason != dspool.ReasonDependency || !strings.Contains(j.Message, "array "+itoa(right.ID)+" has 1 failed") || !strings.Contains(j.Message, "--after ok:"+itoa(right.ID)) {
		t.Fatalf("bottom: %s %q", j.Reason, j.Message)
	}
	// A chain ends at once, link by link, in one pass.
	a := submitSpec(t, db, u.ID, dspool.JobSpec{Hold: true})
	b := submitSpec(t, db, u.ID, dspool.JobSpec{After: itoa(a.ID)})
	c := submitSpec(t, db, u.ID, dspool.JobSpec{After: "ok:" + itoa(b.ID)})
	if n, err := db.SetHold(ctx, a.ID, false, true); err != nil || n != 0 {
		t.Fatalf("holding a held job: %d %v", n, err)
	}
	if _, err := db.CancelJob(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if res, err = db.ResolveDeps(ctx); err != nil || len(res.Ended) != 2 {
		t.Fatalf("a cancelled head of a chain: %+v %v, want both links ended", res, err)
	}
	if j, _ := db.Job(ctx, c.ID); j.State != dspool.JobCancelled || !strings.Contains(j.Message, "job "+itoa(b.ID)+" cancelled") {
		t.Fatalf("the chain's end: %s %q", j.State, j.Message)
	}
}

func TestArrayPrunedWithItsTasks(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	db, err := store.OpenAt(t, filepath.Join(t.TempDir(), "s.db"), store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	u, _ := db.CreateUser(ctx, "ann", false)
	a := submitSpec(t, db, u.ID, dspool.JobSpec{Array: "0-2"})
	if _, _, err := db.CancelArray(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneJobs(ctx, now.Add(time.Hour), 2)
	if err != nil || n != 2 {
		t.Fatalf("prune 2: %d %v", n, err)
	}
	if _, err := db.Array(ctx, a.ID); err != nil {
		t.Fatalf("the array went before its last task: %v", err)
	}
	if n, err = db.PruneJobs(ctx, now.Add(time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("prune the rest: %d %v", n, err)
	}
	if _, err := db.Array(ctx, a.ID); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Fatalf("the array after its last task: %v, want not found", err)
	}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
