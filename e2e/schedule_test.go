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
// `dspool up` killed with SIGKILL at a slot's time, twice (a little before
// the slot, and just after it), and kept down across the next slot, fires
// on its return the latest slot it missed, once, and no slot twice.
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
		offset      time.Duration
		slot, ready time.Time // the slot killed at; when the next control plane was up
	}
	kills := []kill{{offset: -30 * time.Millisecond}, {offset: 5 * time.Millisecond}}
	for i := range kills {
		k := &kills[i]
		k.slot = nextSlot(t, up, token)
		at(k.slot.Add(k.offset))
		killed := time.Now()
		if err := up.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-up.done
		// Down across the next slot too: it passes while nothing runs.
		at(k.slot.Add(scheduleEvery + 300*time.Millisecond))
		up = startUp(t, cfg)
		k.ready = time.Now()
		t.Logf("kill %d: %s from the slot %s; the next control plane was up %s after the kill",
			i+1, k.offset, k.slot.Format("15:04:05.000"), k.ready.Sub(killed).Round(time.Millisecond))
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
		late = append(late, j.SubmittedAt.Sub(s))
	}
	// down holds the slots that may be missing: those from the slot of a
	// kill to the first one that fired after it, which must be one that
	// passed while the control plane was down (the latest at its return),
	// fired at its return.
	down := map[time.Time]bool{}
	for i, k := range kills {
		if j := seen[k.slot.UTC()]; j != nil && k.offset < 0 {
			t.Errorf("kill %d: slot %s, killed before it, fired (job %d) though a later one was due at the return", i+1, k.slot.Format(time.TimeOnly), j.ID)
		}
		var back time.Time
		for s := k.slot.Add(scheduleEvery); !s.After(k.ready); s = s.Add(scheduleEvery) {
			if seen[s.UTC()] != nil {
				back = s
				break
			}
		}
		if back.IsZero() {
			t.Errorf("kill %d: no slot missed while the control plane was down (from %s to %s) fired at its return; slots fired: %s",
				i+1, k.slot.Add(scheduleEvery).Format(time.TimeOnly), k.ready.Format(time.TimeOnly), slotList(all))
			continue
		}
		for s := k.slot; s.Before(back); s = s.Add(scheduleEvery) {
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
