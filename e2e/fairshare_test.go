package e2e_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// twoUsersOnTwoNodes starts dspool up with args (uids of test n), users
// e2eannN and e2ebobN, and a local pool of two nodes of 2 cpus; it returns
// ann's and bob's environments.
func twoUsersOnTwoNodes(t *testing.T, n int, pool string, args ...string) (ann, bob []string) {
	t.Helper()
	requireRoot(t)
	names := []string{fmt.Sprintf("e2eann%d", n), fmt.Sprintf("e2ebob%d", n)}
	for _, name := range names {
		removeAccountAfter(t, name)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(n), Args: args})
	_, annTok := up.createUser(t, names[0])
	_, bobTok := up.createUser(t, names[1])
	applyPool(t, up, "name: "+pool+"\nnode: {cpus: 2, memory: 2GiB}\ncount: 2\nwork: [batch]\n")
	up.waitNodes(t, pool, 2)
	return up.userEnv(annTok), up.userEnv(bobTok)
}

// TestFairShareFlood: with the real binary, two users flood a pool of four
// one-cpu slots, ann first with 40 jobs, then bob with 40. First come,
// first served would run ann's forty first; fair share runs bob's ahead of
// ann's once she has used more than him, and while both still wait, each
// has had within 10% of the half that is their target. dspool queue shows
// every waiting job with its position, factors and reason, and dspool
// share each user's target and usage.
func TestFairShareFlood(t *testing.T) {
	ann, bob := twoUsersOnTwoNodes(t, 220, "flood", "--fair-share-half-life", "1h")

	job := []string{"job", "submit", "--pool", "flood", "--cpus", "1", "--memory", "64MiB", "--array", "0-39", "-o", "json", "--", "sleep", "1"}
	cliOK(t, ann, job...)
	// Wait until ann has used something when bob's work arrives.
	eventually(t, 30*time.Second, "ann's jobs to run", func() bool {
		var rep dspool.ShareReport
		cliJSON(t, ann, &rep, "share")
		return slices.ContainsFunc(rep.Users, func(u dspool.ShareAccount) bool { return u.Name == "e2eann220" && u.CPUSeconds > 0 })
	})
	cliOK(t, bob, job...)

	var q dspool.Queue
	cliJSON(t, bob, &q, "queue", "--pool", "flood")
	if len(q.Jobs) < 40 {
		t.Fatalf("queue of pool flood has %d jobs, want at least bob's 40", len(q.Jobs))
	}
	for i, e := range q.Jobs {
		if e.Position != i+1 || e.Pool != "flood" {
			t.Fatalf("queue entry %d: position %d of pool %s, want position %d of flood:\n%+v", i, e.Position, e.Pool, i+1, e)
		}
		if e.Reason != dspool.WaitResources && e.Reason != dspool.WaitStarting && e.Reason != dspool.WaitPriority || e.Detail == "" {
			t.Errorf("job %s waits for %q (%q), want resources, priority or starting with a detail", e.Job, e.Reason, e.Detail)
		}
		if math.Abs(e.Score-(float64(e.Priority)+e.FairShare+e.Age)) > 1e-6 {
			t.Errorf("job %s: score %v is not priority %d + fair share %v + age %v", e.Job, e.Score, e.Priority, e.FairShare, e.Age)
		}
	}
	if first := q.Jobs[0]; first.User != "e2ebob220" {
		t.Errorf("first in the queue is %s's job %s (fair share %.0f); want bob's, who has used nothing yet", first.User, first.Job, first.FairShare)
	}
	table := cliOK(t, ann, "queue", "--pool", "flood")
	if !strings.Contains(table, "POS") || !strings.Contains(table, "REASON") || !strings.Contains(table, "e2ebob220") {
		t.Errorf("queue table:\n%s", table)
	}

	// While both still wait, after about half of the jobs: each user's part
	// of the use is within 10% of their target.
	var rep dspool.ShareReport
	eventually(t, 120*time.Second, "half of the 80 jobs to end", func() bool {
		cliJSON(t, ann, &rep, "share")
		cliJSON(t, ann, &q, "queue", "--pool", "flood")
		return len(q.Jobs) <= 40
	})
	users := map[string]dspool.ShareAccount{}
	for _, u := range rep.Users {
		users[u.Name] = u
	}
	waiting := map[string]int{}
	for _, e := range q.Jobs {
		waiting[e.User]++
	}
	if waiting["e2eann220"] == 0 || waiting["e2ebob220"] == 0 {
		t.Fatalf("one user no longer waits (%v): the flood ended too soon to judge", waiting)
	}
	for _, name := range []string{"e2eann220", "e2ebob220"} {
		u := users[name]
		if !u.Active || u.Target != 0.5 {
			t.Errorf("%s: target %v (active %v), want 0.5", name, u.Target, u.Active)
		}
		if dev := math.Abs(u.Usage-u.Target) / u.Target; dev > 0.10 {
			t.Errorf("%s used %.1f%% of the pool, target %.0f%%: %.1f%% off, want at most 10%%", name, 100*u.Usage, 100*u.Target, 100*dev)
		}
		t.Logf("%s: usage %.1f%% of the pool (target %.0f%%), factor %.3f, %.0f cpu-seconds", name, 100*u.Usage, 100*u.Target, u.Factor, u.CPUSeconds)
	}
	if table := cliOK(t, ann, "share"); !strings.Contains(table, "user e2eann220") || !strings.Contains(table, "50.0%") {
		t.Errorf("share table:\n%s", table)
	}
}

// TestReservationBackfill: with the real binary, a job that needs a whole
// node (2 cpus) waits while each node of its pool runs a long job of bob's.
// Once it has waited --reserve-after, it reserves one of the nodes; bob's
// jobs that end before the reservation starts (--time 2s) backfill the
// free cpu of that node, his long ones (--time 1h) are kept off it
// (reason reserved), and the large job starts there when the long job
// ends, before the reservation's start.
func TestReservationBackfill(t *testing.T) {
	ann, bob := twoUsersOnTwoNodes(t, 221, "big", "--reserve-after", "2s")

	small := func(limit string, secs string) int64 {
		return submit(t, bob, "--pool", "big", "--cpus", "1", "--memory", "64MiB", "--time", limit, "--", "sleep", secs)
	}
	// Best fit puts a long and a short job on each node: the short ones
	// end at once and leave one cpu free on each. The first node's long
	// job has the shorter time limit and ends first too, so the large job
	// reserves that node and it is the first with room for it.
	long1, _, long2, _ := small("20s", "8"), small("30s", "0.1"), small("40s", "16"), small("30s", "0.1")
	for _, id := range []int64{long1, long2} {
		waitState(t, bob, id, dspool.JobRunning, 30*time.Second)
	}
	large := submit(t, ann, "--pool", "big", "--cpus", "2", "--memory", "64MiB", "--time", "1m", "--", "true")
	var entry dspool.QueueEntry
	eventually(t, 20*time.Second, "the large job to reserve a node", func() bool {
		var q dspool.Queue
		cliJSON(t, ann, &q, "queue", "--pool", "big")
		for _, e := range q.Jobs {
			if e.ID == large {
				entry = e
			}
		}
		return entry.Reason == dspool.WaitReservation
	})
	if entry.Position != 1 || !entry.Reserving || entry.ReservedNode == "" || entry.EstimatedStart == nil {
		t.Fatalf("the large job's queue entry: %+v; want position 1, reserving a node, with a start", entry)
	}
	reserved := entry.ReservedNode
	t.Logf("job %d reserved %s from %s: %s", large, reserved, entry.EstimatedStart.Format(time.RFC3339), entry.Detail)

	// Bob's long jobs may use only the other node; his short ones may
	// also use the reserved one.
	var longs, shorts []int64
	for range 3 {
		longs = append(longs, small("1h", "1"))
	}
	for range 3 {
		shorts = append(shorts, small("2s", "0.5"))
	}
	var why dspool.QueueEntry
	eventually(t, 5*time.Second, "a long job to wait for the reserved node", func() bool {
		var q dspool.Queue
		cliJSON(t, bob, &q, "queue", "--pool", "big")
		for _, e := range q.Jobs {
			if e.Reason == dspool.WaitReserved {
				why = e
				return true
			}
		}
		return false
	})
	if why.ReservedNode != reserved || !strings.Contains(why.Detail, fmt.Sprintf("reserved for job %d", large)) || !slices.Contains(longs, why.ID) || why.EstimatedStart == nil {
		t.Errorf("a job kept off the reserved node says %+v; want one of the long jobs %v, node %s reserved for job %d, and when it may start", why, longs, reserved, large)
	}
	t.Logf("job %s waits: %s; it may start at %s", why.Job, why.Detail, why.EstimatedStart.Format(time.RFC3339))

	big := waitState(t, ann, large, dspool.JobSucceeded, 60*time.Second)
	if big.Node != reserved {
		t.Errorf("the large job ran on %s, want the node it reserved, %s", big.Node, reserved)
	}
	if big.StartedAt.After(entry.EstimatedStart.Add(2 * time.Second)) {
		t.Errorf("the large job started at %s, after its reservation's start %s", big.StartedAt.Format(time.RFC3339Nano), entry.EstimatedStart.Format(time.RFC3339))
	}
	jobOf := func(id int64) *api.JobDetail { return waitState(t, bob, id, dspool.JobSucceeded, 60*time.Second) }
	backfilled := 0
	for _, id := range shorts {
		if j := jobOf(id); j.Node == reserved && j.StartedAt.Before(*big.StartedAt) {
			backfilled++
		}
	}
	if backfilled == 0 {
		t.Errorf("none of bob's short jobs ran on the reserved node %s before the large job: nothing was backfilled", reserved)
	}
	for _, id := range longs {
		if j := jobOf(id); j.Node == reserved && j.StartedAt.Before(*big.StartedAt) {
			t.Errorf("bob's long job %d (--time 1h) started on the reserved node %s at %s, before the large job (%s)", id, reserved,
				j.StartedAt.Format(time.RFC3339Nano), big.StartedAt.Format(time.RFC3339Nano))
		}
	}
	t.Logf("the large job waited %s; %d of bob's short jobs backfilled the reserved node", big.StartedAt.Sub(big.SubmittedAt).Round(time.Millisecond), backfilled)
}
