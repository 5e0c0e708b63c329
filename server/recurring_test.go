package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
)

// recurring is a control plane on a clock the test moves, with no agent
// (jobs stay queued), and a client of a user and of an admin. Its loops do
// not run: the test fires schedules with FireSchedules.
type recurring struct {
	t           testing.TB
	db          *store.DB
	srv         *server.Server
	ada, admin  *api.Client
	mu          sync.Mutex
	now         time.Time
	ctx         context.Context
	adaUser, ad *dspool.User
}

func newRecurring(t testing.TB) *recurring {
	t.Helper()
	r := &recurring{t: t, ctx: context.Background(), now: time.Date(2030, 1, 10, 12, 0, 1, 0, time.UTC)}
	db, err := store.Open(r.ctx, filepath.Join(t.TempDir(), "dspool.db"), store.Options{Now: r.clock, Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r.db = db
	r.srv = server.New(server.Config{Store: db, Now: r.clock})
	hs := httptest.NewServer(r.srv.Handler())
	t.Cleanup(hs.Close)
	for _, p := range []*dspool.Pool{
		{Name: dspool.DefaultPool, Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 4000, Memory: 8 << 30}},
		{Name: "vision", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 4000, Memory: 8 << 30}, Teams: []string{"vision"}},
	} {
		if err := p.Normalize(""); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutPool(r.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	client := func(name string, admin bool) (*api.Client, *dspool.User) {
		u, err := db.CreateUser(r.ctx, name, admin)
		if err != nil {
			t.Fatal(err)
		}
		secret := server.NewSecret("dsp_")
		if _, err := db.AddToken(r.ctx, u.ID, server.HashSecret(secret), "test", dspool.Scopes, nil); err != nil {
			t.Fatal(err)
		}
		return &api.Client{Server: hs.URL, Token: secret}, u
	}
	r.admin, r.ad = client("root", true)
	r.ada, r.adaUser = client("ada", false)
	return r
}

func (r *recurring) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

// at sets the clock to 12:MM:SS of the test's day and fires what is due.
func (r *recurring) at(m, s int) {
	r.t.Helper()
	r.mu.Lock()
	r.now = time.Date(2030, 1, 10, 12, m, s, 0, time.UTC)
	r.mu.Unlock()
	if _, err := r.srv.FireSchedules(r.ctx); err != nil {
		r.t.Fatalf("fire schedules at 12:%02d:%02d: %v", m, s, err)
	}
}

// runs are the jobs of ada's schedule name, oldest first.
func (r *recurring) runs(name string) []*dspool.Job {
	r.t.Helper()
	l, err := r.ada.Jobs(r.ctx, api.JobQuery{Schedule: name, Limit: 100})
	if err != nil {
		r.t.Fatal(err)
	}
	out := l.Jobs
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (r *recurring) create(spec dspool.ScheduleSpec) *dspool.Schedule {
	r.t.Helper()
	sc, err := r.ada.CreateSchedule(r.ctx, &spec)
	if err != nil {
		r.t.Fatalf("create schedule %s: %v", spec.Name, err)
	}
	return sc
}

func slots(jobs []*dspool.Job) []string {
	var out []string
	for _, j := range jobs {
		if j.Slot == nil {
			out = append(out, "none")
			continue
		}
		out = append(out, j.Slot.UTC().Format(time.TimeOnly))
	}
	return out
}

// TestScheduleFiresOncePerSlot: a slot fires once at its time, not before,
// not again; after slots missed (the control plane was down), the latest
// alone runs, and the schedule says what was missed.
func TestScheduleFiresOncePerSlot(t *testing.T) {
	r := newRecurring(t)
	sc := r.create(dspool.ScheduleSpec{Name: "tick", Cron: "*/5 * * * * *", Overlap: dspool.OverlapQueue,
		Job: dspool.JobSpec{Command: []string{"true"}, CPUs: 500}})
	if sc.NextSlot == nil || !sc.NextSlot.Equal(time.Date(2030, 1, 10, 12, 0, 5, 0, time.UTC)) || sc.Timezone != "UTC" || sc.User != "ada" {
		t.Fatalf("created: %+v; want the next slot 12:00:05 UTC, of ada", sc)
	}
	r.at(0, 4)
	if got := slots(r.runs("tick")); len(got) != 0 {
		t.Fatalf("runs before the first slot: %v, want none", got)
	}
	r.at(0, 5)
	r.at(0, 5)
	r.at(0, 6)
	if got := slots(r.runs("tick")); strings.Join(got, " ") != "12:00:05" {
		t.Fatalf("runs after the first slot, fired thrice: %v, want one, at 12:00:05", got)
	}
	r.at(0, 17) // 10 and 15 were missed: 15 runs, once
	r.at(0, 18)
	r.at(0, 20)
	got := r.runs("tick")
	if s := slots(got); strings.Join(s, " ") != "12:00:05 12:00:15 12:00:20" {
		t.Fatalf("runs: %v, want 12:00:05 12:00:15 12:00:20: the latest missed slot once, then each", s)
	}
	j := got[0]
	if j.Schedule != "tick" || j.Name != "tick" || j.CPUs != 500 || j.User != "ada" || j.State != dspool.JobQueued {
		t.Errorf("a run: %+v; want a queued job of ada named tick, with the schedule's spec", j)
	}
	d, err := r.ada.Schedule(r.ctx, "tick")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Runs) != 3 || d.LastJob != got[2].ID || !d.LastSlot.Equal(*got[2].Slot) || d.Message != "" {
		t.Errorf("schedule show: %d runs, last job %d slot %v message %q; want 3, %d, %s, none",
			len(d.Runs), d.LastJob, d.LastSlot, d.Message, got[2].ID, got[2].Slot)
	}
	r.at(0, 31)
	if d, err = r.ada.Schedule(r.ctx, "tick"); err != nil || !strings.Contains(d.Message, "12:00:25 UTC until this one were missed") {
		t.Errorf("after a missed slot, the schedule's message: %q %v; want it to say which were missed", d.Message, err)
	}
}

// TestScheduleOverlap: at a slot while the run of the one before is still
// queued, skip runs nothing, queue runs beside it, replace cancels it and
// runs.
func TestScheduleOverlap(t *testing.T) {
	for _, tc := range []struct {
		overlap  dspool.Overlap
		runs     string // the runs' states, oldest first
		messages string
	}{
		{dspool.OverlapSkip, "queued", "skipped: job 1 of an earlier slot is still queued (overlap skip)"},
		{dspool.OverlapQueue, "queued queued", ""},
		{dspool.OverlapReplace, "cancelled queued", "cancelled job 1 of earlier slots (overlap replace)"},
	} {
		t.Run(string(tc.overlap), func(t *testing.T) {
			r := newRecurring(t)
			r.create(dspool.ScheduleSpec{Name: "etl", Cron: "*/5 * * * * *", Overlap: tc.overlap, Job: dspool.JobSpec{Command: []string{"true"}}})
			r.at(0, 5)
			r.at(0, 10)
			var states []string
			for _, j := range r.runs("etl") {
				states = append(states, string(j.State))
			}
			if got := strings.Join(states, " "); got != tc.runs {
				t.Errorf("runs: %s, want %s", got, tc.runs)
			}
			d, err := r.ada.Schedule(r.ctx, "etl")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(d.Message, tc.messages) || (tc.messages == "") != (d.Message == "") {
				t.Errorf("message: %q, want %q", d.Message, tc.messages)
			}
			// Once the run ends, the next slot runs whatever the policy.
			for _, j := range r.runs("etl") {
				if !j.State.Terminal() {
					if _, err := r.ada.CancelJob(r.ctx, j.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			n := len(r.runs("etl"))
			r.at(0, 15)
			if got := len(r.runs("etl")); got != n+1 {
				t.Errorf("the slot after the runs ended: %d runs, want %d", got, n+1)
			}
		})
	}
}

// TestScheduleRunRefused: a slot whose job is refused (its owner lost the
// team that may use the pool, or was disabled) runs nothing and says why;
// the loop goes on, and the next slot runs once the owner may again.
func TestScheduleRunRefused(t *testing.T) {
	r := newRecurring(t)
	if _, err := r.admin.CreateTeam(r.ctx, "vision"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.AddTeamMember(r.ctx, "vision", "ada", false); err != nil {
		t.Fatal(err)
	}
	r.create(dspool.ScheduleSpec{Name: "train", Cron: "*/5 * * * * *", Job: dspool.JobSpec{Pool: "vision", Command: []string{"true"}}})
	r.create(dspool.ScheduleSpec{Name: "other", Cron: "*/5 * * * * *", Job: dspool.JobSpec{Command: []string{"true"}}})
	if _, err := r.admin.RemoveTeamMember(r.ctx, "vision", "ada"); err != nil {
		t.Fatal(err)
	}
	r.at(0, 5)
	if got := r.runs("train"); len(got) != 0 {
		t.Errorf("runs after ada left the pool's team: %v, want none", slots(got))
	}
	if got := r.runs("other"); len(got) != 1 {
		t.Errorf("runs of another schedule at the same slot: %v, want one", slots(got))
	}
	d, err := r.ada.Schedule(r.ctx, "train")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Message, "slot 2030-01-10 12:00:05 UTC not run") || !strings.Contains(d.Message, "vision") ||
		d.NextSlot == nil || !d.NextSlot.Equal(time.Date(2030, 1, 10, 12, 0, 10, 0, time.UTC)) {
		t.Errorf("the refused slot: message %q, next %v; want why, and the next slot 12:00:10", d.Message, d.NextSlot)
	}
	if _, err := r.admin.AddTeamMember(r.ctx, "vision", "ada", false); err != nil {
		t.Fatal(err)
	}
	r.at(0, 10)
	if got := r.runs("train"); len(got) != 1 {
		t.Errorf("runs once ada is back in the team: %v, want one", slots(got))
	}
	if _, err := r.admin.DisableUser(r.ctx, "ada"); err != nil {
		t.Fatal(err)
	}
	r.at(0, 15)
	d, err = r.admin.Schedule(r.ctx, itoa(d.ID))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Runs) != 1 || !strings.Contains(d.Message, "its owner ada is disabled") {
		t.Errorf("a slot of a disabled owner: %d runs, message %q; want 1 and why", len(d.Runs), d.Message)
	}
}

// TestSchedulePauseResume: a paused schedule fires nothing; resumed, it
// fires from its next slot, not those it was paused for.
func TestSchedulePauseResume(t *testing.T) {
	r := newRecurring(t)
	r.create(dspool.ScheduleSpec{Name: "etl", Cron: "*/5 * * * * *", Overlap: dspool.OverlapQueue, Job: dspool.JobSpec{Command: []string{"true"}}})
	sc, err := r.ada.PauseSchedule(r.ctx, "etl")
	if err != nil || !sc.Paused || sc.NextSlot != nil {
		t.Fatalf("pause: %+v %v", sc, err)
	}
	r.at(0, 5)
	r.at(0, 12)
	if got := r.runs("etl"); len(got) != 0 {
		t.Errorf("runs while paused: %v, want none", slots(got))
	}
	if sc, err = r.ada.ResumeSchedule(r.ctx, "etl"); err != nil || sc.Paused || sc.NextSlot == nil ||
		!sc.NextSlot.Equal(time.Date(2030, 1, 10, 12, 0, 15, 0, time.UTC)) {
		t.Fatalf("resume at 12:00:12: %+v %v; want the next slot 12:00:15", sc, err)
	}
	r.at(0, 15)
	if got := slots(r.runs("etl")); strings.Join(got, " ") != "12:00:15" {
		t.Errorf("runs after resuming: %v, want 12:00:15 alone", got)
	}
	if _, err := r.ada.DeleteSchedule(r.ctx, "etl"); err != nil {
		t.Fatal(err)
	}
	r.at(0, 20)
	if got := r.runs("etl"); len(got) != 1 {
		t.Errorf("runs after the delete: %v, want the one before, kept", slots(got))
	}
}

// TestScheduleCreateRefuses: what is wrong is refused at creation, naming
// the field, as job submit would refuse the job.
func TestScheduleCreateRefuses(t *testing.T) {
	r := newRecurring(t)
	job := dspool.JobSpec{Command: []string{"true"}}
	r.create(dspool.ScheduleSpec{Name: "taken", Cron: "@daily", Job: job})
	for _, tc := range []struct {
		name       string
		spec       dspool.ScheduleSpec
		code       string
		field, msg string
	}{
		{"bad name", dspool.ScheduleSpec{Name: "Nightly Run", Cron: "@daily", Job: job}, dspool.EInvalid, "name", "not a valid name"},
		{"bad cron", dspool.ScheduleSpec{Name: "a", Cron: "0 25 * * *", Job: job}, dspool.EInvalid, "cron", "not a cron expression"},
		{"too often", dspool.ScheduleSpec{Name: "a", Cron: "* * * * * *", Job: job}, dspool.EInvalid, "cron", "at most one run every 2s"},
		{"bad time zone", dspool.ScheduleSpec{Name: "a", Cron: "@daily", Timezone: "Mars/Olympus", Job: job}, dspool.EInvalid, "timezone", "not a time zone"},
		{"bad overlap", dspool.ScheduleSpec{Name: "a", Cron: "@daily", Overlap: "wait", Job: job}, dspool.EInvalid, "overlap", "skip, queue or replace"},
		{"no command", dspool.ScheduleSpec{Name: "a", Cron: "@daily"}, dspool.EInvalid, "job.command", "is empty"},
		{"no such pool", dspool.ScheduleSpec{Name: "a", Cron: "@daily", Job: dspool.JobSpec{Pool: "nope", Command: []string{"true"}}}, dspool.EInvalid, "job.pool", "no pool named"},
		{"a pool not granted", dspool.ScheduleSpec{Name: "a", Cron: "@daily", Job: dspool.JobSpec{Pool: "vision", Command: []string{"true"}}}, dspool.EForbidden, "", "vision"},
		{"too big for the pool", dspool.ScheduleSpec{Name: "a", Cron: "@daily", Job: dspool.JobSpec{GPUs: 1, Command: []string{"true"}}}, dspool.EInvalid, "job.gpus", ""},
		{"name taken", dspool.ScheduleSpec{Name: "taken", Cron: "@daily", Job: job}, dspool.EConflict, "", "already have a schedule named taken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.ada.CreateSchedule(r.ctx, &tc.spec)
			e, _ := err.(*dspool.Error)
			if e == nil || e.Code != tc.code || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("got %#v (%v), want %s on field %q saying %q", e, err, tc.code, tc.field, tc.msg)
			}
		})
	}
	l, err := r.ada.Schedules(r.ctx, false)
	if err != nil || len(l) != 1 {
		t.Errorf("ada's schedules after the refusals: %v %v, want the one", l, err)
	}
	if _, err := r.ada.Schedules(r.ctx, true); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Errorf("ada listing every user's schedules: %v, want forbidden", err)
	}
	if l, err := r.admin.Schedules(r.ctx, true); err != nil || len(l) != 1 || l[0].User != "ada" {
		t.Errorf("the admin listing every user's schedules: %v %v, want ada's", l, err)
	}
}

// TestScheduleReplaceStopsARunningRun: with overlap replace, a slot that
// comes while the run of the one before still runs stops it (its process
// tree, as job cancel does) and runs anew; with real agents and the real
// clock, a slot every 2 s.
func TestScheduleReplaceStopsARunningRun(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 41900})
	ctx := context.Background()
	sc, err := p.Admin.CreateSchedule(ctx, &dspool.ScheduleSpec{Name: "long", Cron: "*/2 * * * * *", Overlap: dspool.OverlapReplace,
		Job: dspool.JobSpec{Command: []string{"sleep", "60"}, CPUs: 100, Memory: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	runs := func() []*dspool.Job {
		l, err := p.Admin.Jobs(ctx, api.JobQuery{Schedule: sc.Name, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return l.Jobs // newest first
	}
	var first *dspool.Job
	p.Eventually(10*time.Second, func() bool {
		l := runs()
		if len(l) == 0 {
			return false
		}
		first = l[len(l)-1]
		return first.State == dspool.JobRunning && first.StartedAt != nil
	}, "the first run to start")
	p.Eventually(10*time.Second, func() bool {
		j, err := p.Admin.Job(ctx, first.ID)
		return err == nil && j.State == dspool.JobCancelled && len(runs()) >= 2
	}, "the next slot to cancel the first run and submit its own")
	d, err := p.Admin.Schedule(ctx, sc.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Message, "(overlap replace)") {
		t.Errorf("the schedule's message: %q, want it to say which run it replaced", d.Message)
	}
	if _, err := p.Admin.DeleteSchedule(ctx, sc.Name); err != nil {
		t.Fatal(err)
	}
	for _, j := range runs() {
		if !j.State.Terminal() {
			if _, err := p.Admin.CancelJob(ctx, j.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// BenchmarkFireSchedules fires 1,000 schedules (10 users' 100) due at the
// same slot, a team's nightly jobs at 02:00: each slot is a transaction of
// its own, durable before the next.
func BenchmarkFireSchedules(b *testing.B) {
	for range b.N {
		b.StopTimer()
		r := newRecurring(b)
		slot := time.Date(2030, 1, 11, 2, 0, 0, 0, time.UTC)
		for u := range 10 {
			usr, err := r.db.CreateUser(r.ctx, fmt.Sprintf("user%d", u), false)
			if err != nil {
				b.Fatal(err)
			}
			for i := range dspool.MaxSchedules {
				spec := &dspool.ScheduleSpec{Name: fmt.Sprintf("s%d", i), Cron: "0 2 * * *", Job: dspool.JobSpec{Command: []string{"true"}}}
				if err := spec.Normalize(); err != nil {
					b.Fatal(err)
				}
				if _, err := r.db.CreateSchedule(r.ctx, usr.ID, spec, slot); err != nil {
					b.Fatal(err)
				}
			}
		}
		r.mu.Lock()
		r.now = slot
		r.mu.Unlock()
		b.StartTimer()
		if _, err := r.srv.FireSchedules(r.ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n, err := r.db.CountJobs(r.ctx); err != nil || n[dspool.JobQueued] != 1000 {
			b.Fatalf("jobs after firing: %v %v, want 1000 queued", n, err)
		}
	}
}
