package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// scheduleEvery is the period of the schedule TestScheduleAcrossKill9
// makes: its cron expression fires at each multiple of it.
const scheduleEvery = 3 * time.Second

// TestScheduleAcrossKill9: a schedule every 3 s fires once per slot, and
// `dspool up` killed with SIGKILL at a slot's time fires on its return the
// latest slot it missed, once, and no slot twice: killed a little before a
// slot and started again at once; killed a little before a slot and kept
// down across the next one too; killed just after a slot (which has
// fired, or not) and kept down across the next one.
func TestScheduleAcrossKill9(t *testing.T) {
	cfg := upConfig{UIDBase: uidBase(197)}
	up := startUp(t, cfg)
	cfg.Data, cfg.Login = up.Data, up.Login
	_, token := up.createUser(t, "e2esched197")
	env := up.userEnv(token)
	var sc dspool.Schedule
	out := cliOK(t, env, "schedule", "create", "tick", "--cron", fmt.Sprintf("*/%d * * * * *", int(scheduleEvery.Seconds())),
		"--overlap", "queue", "--cpus", "0.1", "--memory", "64MiB", "-o", "json", "--", "true")
	if err := json.Unmarshal([]byte(out), &sc); err != nil {
		t.Fatalf("schedule create -o json: %v: %s", err, out)
	}
	if sc.Name != "tick" || sc.NextSlot == nil || sc.Overlap != dspool.OverlapQueue {
		t.Fatalf("schedule create: %+v", sc)
	}
	ctx := context.Background()
	runs := func(up *upProc) []*dspool.Job {
		t.Helper()
		l, err := up.api(token).Jobs(ctx, api.JobQuery{Schedule: "tick", Limit: 1000})
		if err != nil {
			t.Fatalf("the schedule's runs: %v", err)
		}
		sort.Slice(l.Jobs, func(i, k int) bool { return l.Jobs[i].Slot.Before(*l.Jobs[k].Slot) })
		return l.Jobs
	}
	eventually(t, 4*scheduleEvery, "two runs of the schedule", func() bool { return len(runs(up)) >= 2 })

	type kill struct {
		offset time.Duration // from the slot
		down   bool          // kept down past the next slot
		slot   time.Time     // the slot killed at
		killed time.Time
	}
	kills := []kill{{offset: -30 * time.Millisecond}, {offset: -30 * time.Millisecond, down: true}, {offset: 5 * time.Millisecond, down: true}}
	for i := range kills {
		k := &kills[i]
		k.slot = nextSlot(t, up, token)
		at(k.slot.Add(k.offset))
		k.killed = time.Now()
		if err := up.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-up.done
		if k.down {
			at(k.slot.Add(scheduleEvery + 300*time.Millisecond))
		}
		up = startUp(t, cfg)
		t.Logf("kill %d: %s from the slot %s; the next control plane was up %s after the kill",
			i+1, k.offset, k.slot.Format("15:04:05.000"), time.Since(k.killed).Round(time.Millisecond))
		n := len(runs(up))
		eventually(t, 4*scheduleEvery, "two runs after the restart", func() bool { return len(runs(up)) >= n+2 })
	}

	all := runs(up)
	seen := map[time.Time]*dspool.Job{}
	var late []time.Duration
	for _, j := range all {
		s := j.Slot.UTC()
		if s.Truncate(scheduleEvery) != s {
			t.Errorf("job %d runs for %s, which is no slot of the schedule", j.ID, s.Format(time.TimeOnly+".000"))
		}
		if other, ok := seen[s]; ok {
			t.Errorf("slot %s fired twice: jobs %d and %d", s.Format(time.TimeOnly), other.ID, j.ID)
		}
		seen[s] = j
		if j.Schedule != "tick" || j.Name != "tick" || j.User != "e2esched197" {
			t.Errorf("job %d: schedule %q name %q user %q, want a run of tick of e2esched197", j.ID, j.Schedule, j.Name, j.User)
		}
		// Each run is for the latest slot when it was submitted: on time,
		// or the latest missed at a return.
		d := j.SubmittedAt.Sub(s)
		if d < 0 || d >= scheduleEvery {
			t.Errorf("job %d for the slot %s was submitted at %s: not the latest slot then", j.ID, s.Format(time.TimeOnly), j.SubmittedAt.Format(time.TimeOnly+".000"))
		}
		late = append(late, d)
	}
	// After each kill, the first run the next control plane submitted is
	// for a slot at or after the one killed at; the slots between are
	// those missed while it was down (and the one killed at, when it had
	// fired). No slot is missing while a control plane ran.
	down := map[time.Time]bool{}
	for i, k := range kills {
		var back *dspool.Job
		for _, j := range all {
			if !j.Slot.Before(k.slot) && j.SubmittedAt.After(k.killed) {
				back = j
				break
			}
		}
		if back == nil {
			t.Errorf("kill %d: no run was submitted after it; slots fired: %s", i+1, slotList(all))
			continue
		}
		if k.down && !back.Slot.After(k.slot) {
			t.Errorf("kill %d: the first run after it is for the slot %s, killed at, though a later one passed while down", i+1, back.Slot.Format(time.TimeOnly))
		}
		t.Logf("kill %d at %s: the next control plane fired the slot %s (job %d) %s after it", i+1, k.slot.Format(time.TimeOnly),
			back.Slot.Format(time.TimeOnly), back.ID, back.SubmittedAt.Sub(*back.Slot).Round(time.Millisecond))
		for s := k.slot; s.Before(*back.Slot); s = s.Add(scheduleEvery) {
			down[s.UTC()] = true
		}
	}
	var gaps []string
	for s := all[0].Slot.UTC(); !s.After(all[len(all)-1].Slot.UTC()); s = s.Add(scheduleEvery) {
		if seen[s] == nil && !down[s] {
			gaps = append(gaps, s.Format(time.TimeOnly))
		}
	}
	if len(gaps) > 0 {
		t.Errorf("slots of a running control plane that did not fire: %v (fired: %s)", gaps, slotList(all))
	}
	t.Logf("%d runs, for the slots %s", len(all), slotList(all))
	slices.Sort(late)
	t.Logf("slot to job submitted: min %s, median %s, max %s (the latest are the slots fired at a return)",
		late[0].Round(time.Millisecond), late[len(late)/2].Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond))

	out = cliOK(t, up.userEnv(token), "schedule", "show", "tick")
	if !strings.Contains(out, "state:      active") || !strings.Contains(out, "last slot:") {
		t.Errorf("schedule show after the restarts:\n%s", out)
	}
	cliOK(t, up.userEnv(token), "schedule", "delete", "tick")
}

// nextSlot is the next slot of the user's schedule tick.
func nextSlot(t *testing.T, up *upProc, token string) time.Time {
	t.Helper()
	d, err := up.api(token).Schedule(context.Background(), "tick")
	if err != nil || d.NextSlot == nil {
		t.Fatalf("schedule tick: %+v %v", d, err)
	}
	return *d.NextSlot
}

// at returns at time when: the test acts at a slot's time.
func at(when time.Time) {
	timer := time.NewTimer(time.Until(when))
	defer timer.Stop()
	<-timer.C
}

func slotList(jobs []*dspool.Job) string {
	var s []string
	for _, j := range jobs {
		s = append(s, j.Slot.UTC().Format(time.TimeOnly))
	}
	return strings.Join(s, " ")
}
