package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/store"
)

// TestPriorityBounds: a submission outside the range of its user and team
// is refused with the range, one without a priority gets the default, and
// a queued job's priority changes by an admin, a maintainer of its team
// within its range, and its owner within theirs or lower; no one else.
func TestPriorityBounds(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 47300})
	ctx := context.Background()
	ann, bob, cy := newUser(t, p, "ann"), newUser(t, p, "bob"), newUser(t, p, "cy")
	newTeam(t, p, "vision", dspool.Limits{Priority: &dspool.PriorityRange{Min: -100, Max: 100}, DefaultPriority: ptr(10)}, true, ann, bob)

	submit := func(c *api.Client, prio *int, array string) (*dspool.Job, error) {
		return c.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, Priority: prio, Hold: true, Array: array}, 0)
	}
	_, err := submit(bob.c, ptr(500), "")
	wantCode(t, "bob at 500", err, dspool.EInvalid, "500 is out of range for user bob in team vision: give -100 to 100 (the range of team vision), or ask an admin")
	if e, ok := err.(*dspool.Error); !ok || e.Field != "priority" {
		t.Errorf("bob at 500: %#v, want the field priority", err)
	}
	j, err := submit(bob.c, nil, "")
	if err != nil || j.Priority != 10 {
		t.Fatalf("bob without a priority: %+v %v; want the team's default, 10", j, err)
	}
	if j0, err := submit(bob.c, ptr(0), ""); err != nil || j0.Priority != 0 {
		t.Fatalf("bob at 0: %+v %v; want 0, not the default", j0, err)
	}
	_, err = submit(cy.c, ptr(5), "")
	wantCode(t, "cy, of no team and no range, at 5", err, dspool.EInvalid, "5 is out of range for user cy: give -1000 to 0 (with no range set, only an admin may raise a job above 0)")
	if jc, err := submit(cy.c, ptr(-5), ""); err != nil || jc.Priority != -5 {
		t.Fatalf("cy lowers his own: %+v %v", jc, err)
	}
	if ja, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, Team: "vision", Priority: ptr(1000), Hold: true}, 0); err != nil || ja.Priority != 1000 {
		t.Fatalf("the admin at 1000 for vision: %+v %v", ja, err)
	}

	// bob's own range narrows the team's, and his default comes first.
	if _, err := p.Admin.SetUserLimits(ctx, bob.Name, dspool.Limits{Priority: &dspool.PriorityRange{Min: -50, Max: 50}, DefaultPriority: ptr(-20)}); err != nil {
		t.Fatal(err)
	}
	_, err = submit(bob.c, ptr(60), "")
	wantCode(t, "bob at 60", err, dspool.EInvalid, "give -50 to 50 (the range of user bob and team vision)")
	if jd, err := submit(bob.c, nil, ""); err != nil || jd.Priority != -20 {
		t.Fatalf("bob without a priority: %+v %v; want his own default, -20", jd, err)
	}
	_, err = p.Admin.SetTeamLimits(ctx, "vision", dspool.Limits{Priority: &dspool.PriorityRange{Min: -10, Max: 10}, DefaultPriority: ptr(20)})
	wantCode(t, "a default outside its range", err, dspool.EInvalid, "20 is outside the priority range -10..10")

	// A schedule's job is checked as a submission is, and keeps "none
	// given", so each slot gets the default in force then.
	_, err = bob.c.CreateSchedule(ctx, &dspool.ScheduleSpec{Name: "loud", Cron: "@daily", Job: dspool.JobSpec{Command: []string{"true"}, Priority: ptr(500)}})
	wantCode(t, "a schedule at 500", err, dspool.EInvalid, "500 is out of range for user bob in team vision")
	if sc, err := bob.c.CreateSchedule(ctx, &dspool.ScheduleSpec{Name: "quiet", Cron: "@daily", Job: dspool.JobSpec{Command: []string{"true"}}}); err != nil || sc.Job.Priority != nil {
		t.Fatalf("a schedule without a priority: %+v %v; want none stored", sc, err)
	}

	// Changes of a queued job.
	set := func(c *api.Client, ref string, prio int) (*dspool.Job, error) { return c.SetPriority(ctx, ref, prio) }
	ref := fmt.Sprint(j.ID)
	if got, err := set(ann.c, ref, 100); err != nil || got.Priority != 100 {
		t.Fatalf("the maintainer raises bob's job to 100: %+v %v", got, err)
	}
	_, err = set(ann.c, ref, 101)
	wantCode(t, "the maintainer past the team's range", err, dspool.EInvalid, "101 is out of range for a maintainer of team vision: give -100 to 100")
	_, err = set(cy.c, ref, -5)
	wantCode(t, "cy, of another team", err, dspool.ENotFound, "not found")
	if got, err := set(bob.c, ref, 70); err != nil || got.Priority != 70 {
		t.Fatalf("bob lowers the job the maintainer raised: %+v %v", got, err)
	}
	_, err = set(bob.c, ref, 80)
	wantCode(t, "bob raising past his range", err, dspool.EInvalid, "80 is out of range for user bob in team vision: give -50 to 50")
	_, err = set(bob.c, ref, -51)
	wantCode(t, "bob below his range", err, dspool.EInvalid, "give -50 to 50")
	if got, err := set(p.Admin, ref, -1000); err != nil || got.Priority != -1000 {
		t.Fatalf("the admin: %+v %v", got, err)
	}

	// An array: every queued task, or one.
	arr, err := submit(bob.c, ptr(0), "0-3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set(ann.c, fmt.Sprint(arr.ID), 50); err != nil {
		t.Fatal(err)
	}
	if _, err := set(ann.c, fmt.Sprintf("%d_2", arr.ID), 40); err != nil {
		t.Fatal(err)
	}
	tasks, err := bob.c.Jobs(ctx, api.JobQuery{Array: arr.ID})
	if err != nil {
		t.Fatal(err)
	}
	var prios []string
	for _, tk := range tasks.Jobs {
		prios = append(prios, fmt.Sprintf("%s=%d", tk.Ref(), tk.Priority))
	}
	if got, want := strings.Join(prios, " "), fmt.Sprintf("%[1]d_3=50 %[1]d_2=40 %[1]d_1=50 %[1]d_0=50", arr.ID); got != want {
		t.Errorf("the array's tasks: got %s, want %s", got, want)
	}

	// Only a queued job's.
	done, err := submit(bob.c, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.c.CancelJob(ctx, done.ID); err != nil {
		t.Fatal(err)
	}
	_, err = set(ann.c, fmt.Sprint(done.ID), 5)
	wantCode(t, "a job that ended", err, dspool.EConflict, "only a queued job's priority can change")

	entries, err := p.DB.Audit(ctx, store.AuditFilter{Action: "job.priority"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Actor+" "+e.Target+" "+e.Detail)
	}
	want := []string{"ann job " + ref + " priority 10 to 100", "bob job " + ref + " priority 100 to 70", "admin47300 job " + ref + " priority 70 to -1000",
		fmt.Sprintf("ann array %d priority 0 to 50 (4 queued tasks)", arr.ID), fmt.Sprintf("ann job %d_2 priority 50 to 40", arr.ID)}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
