package store_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

// usageFixture is a store with a history in hours around a window
// [since, until] = [t0+10h, t0+20h]:
//
//	node a1 (pool a, $2/h)  created  t0+5h, gone t0+12h  -> 2h in the window
//	node a2 (pool a)        created t0+15h, alive        -> 5h
//	node a3 (pool a)        created t0+1h,  gone t0+3h   -> 0 (before)
//	node b1 (pool b, none)  created t0+18h, lost, alive  -> 2h
//	node b2 (pool b)        created t0+16h, gone t0+17h  -> 1h (UpdateNode)
//	node x1 (pool x, unknown: no price) created t0+11h, gone t0+13h -> 2h
//	alice: job 1 (2 cpus, 1 gpu) attempt 1 t0+8h..t0+11h   -> 1h
//	       job 1 attempt 2 t0+19h.., still running          -> 1h
//	       job 2 (0.5 cpu) attempt t0+12h..t0+14h            -> 2h
//	       session t0+9h..t0+10h30m                         -> 0.5h
//	bob:   job 3 attempt t0+21h..t0+22h                     -> 0 (after)
//	       session t0+19h30m.., still open                  -> 0.5h
//	carol: nothing
type usageFixture struct {
	db           *store.DB
	since, until time.Time
}

func newUsageFixture(t *testing.T) *usageFixture {
	t.Helper()
	c := newClock()
	t0 := c.t
	h := func(x float64) time.Time { return t0.Add(time.Duration(x * float64(time.Hour))) }
	db := openAt(t, c)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*dspool.Pool{
		{Name: "a", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 4000, Memory: 1 << 30}, PricePerNodeHour: 2},
		{Name: "b", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 4000, Memory: 1 << 30}},
		{Name: "empty", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 4000, Memory: 1 << 30}, PricePerNodeHour: 5},
	} {
		must(p.Normalize(""))
		_, err := db.PutPool(ctx, p)
		must(err)
	}
	node := func(pool, name string, created float64) {
		t.Helper()
		must(db.CreateNode(ctx, &dspool.Node{ID: "id-" + name, Name: name, Pool: pool, State: dspool.NodeReady, CreatedAt: h(created)}, []byte(name)))
	}
	retire := func(pool, name string, at float64) {
		t.Helper()
		c.t = h(at)
		_, err := db.RetireNode(ctx, pool, name)
		must(err)
	}
	node("a", "a1", 5)
	node("a", "a2", 15)
	node("a", "a3", 1)
	node("b", "b1", 18)
	node("x", "x1", 11)
	retire("a", "a3", 3)
	retire("a", "a1", 12)
	retire("x", "x1", 13)
	c.t = h(19)
	_, err := db.LoseNode(ctx, "id-b1", "silent")
	must(err)
	node("b", "b2", 16)
	c.t = h(17)
	must(db.UpdateNode(ctx, &dspool.Node{ID: "id-b2", State: dspool.NodeGone}))

	users := map[string]*dspool.User{}
	for _, name := range []string{"alice", "bob", "carol"} {
		u, err := db.CreateUser(ctx, name, false)
		must(err)
		users[name] = u
	}
	job := func(user string, cpus dspool.MilliCPU, gpus, retries int) int64 {
		t.Helper()
		spec := dspool.JobSpec{Command: []string{"true"}, CPUs: cpus, GPUs: gpus, Retries: retries}
		must(spec.Normalize())
		j, _, err := db.SubmitJob(ctx, users[user].ID, &spec)
		must(err)
		return j.ID
	}
	run := func(id int64, attempt int, node string, start, end float64) {
		t.Helper()
		_, err := db.Place(ctx, []store.Placement{{Job: id, Attempt: attempt, Node: node}})
		must(err)
		_, err = db.MarkStarted(ctx, id, attempt, node, h(start))
		must(err)
		if end > 0 {
			code := 1
			_, err = db.FinishAttempt(ctx, id, attempt, node, dspool.AttemptResult{ExitCode: &code}, h(end))
			must(err)
		}
	}
	j1 := job("alice", 2000, 1, 1)
	run(j1, 1, "id-a1", 8, 11)
	run(j1, 2, "id-a2", 19, 0)
	run(job("alice", 500, 0, 0), 1, "id-a2", 12, 14)
	run(job("bob", 1000, 0, 0), 1, "id-a2", 21, 22)
	// Placed, never started: no time.
	_, err = db.Place(ctx, []store.Placement{{Job: job("carol", 1000, 0, 0), Attempt: 1, Node: "id-a2"}})
	must(err)

	session := func(id, user string, start, end float64, gpus ...int) {
		t.Helper()
		must(db.CreateSession(ctx, &dspool.Session{ID: id, User: user, Kind: dspool.SessionSSH, Pool: "a", Node: "id-a2",
			CPUs: 1000, Memory: 1 << 30, State: dspool.SessionActive, StartedAt: h(start), LastActivity: h(start), GPUIndices: gpus}))
		if end > 0 {
			must(db.EndSession(ctx, store.SessionActivity{ID: id, LastActivity: h(end)}, "logged out", h(end)))
		}
	}
	session("s1", "alice", 9, 10.5)
	session("s2", "bob", 19.5, 0, 0, 1) // a session holding 2 GPUs: they count as a job's do
	return &usageFixture{db: db, since: h(10), until: h(20)}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestUsageByPool(t *testing.T) {
	f := newUsageFixture(t)
	rep, err := f.db.Usage(context.Background(), f.since, f.until, dspool.UsageByPool, "")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Since.Equal(f.since) || !rep.Until.Equal(f.until) || rep.By != dspool.UsageByPool || rep.Users != nil {
		t.Errorf("report header: got %v..%v by %s with users %v", rep.Since, rep.Until, rep.By, rep.Users)
	}
	want := []dspool.PoolUsage{
		{Pool: "a", NodeHours: 7, PricePerNodeHour: 2, Cost: 14},
		{Pool: "b", NodeHours: 3},
		{Pool: "empty", PricePerNodeHour: 5},
		{Pool: "x", NodeHours: 2},
	}
	if len(rep.Pools) != len(want) {
		t.Fatalf("got %+v, want %+v", rep.Pools, want)
	}
	for i, w := range want {
		g := rep.Pools[i]
		if g.Pool != w.Pool || !near(g.NodeHours, w.NodeHours) || !near(g.NodeSeconds, w.NodeHours*3600) ||
			g.PricePerNodeHour != w.PricePerNodeHour || !near(g.Cost, w.Cost) {
			t.Errorf("pool %d: got %+v, want %+v (node seconds %v)", i, g, w, w.NodeHours*3600)
		}
	}
}

func TestUsageByUser(t *testing.T) {
	f := newUsageFixture(t)
	type row struct{ job, cpu, gpu, session float64 } // hours
	tests := []struct {
		name         string
		user         string
		since, until time.Time
		want         map[string]row
	}{
		{"every user", "", f.since, f.until, map[string]row{
			"alice": {job: 1 + 1 + 2, cpu: 2*(1+1) + 0.5*2, gpu: 1 + 1, session: 0.5},
			"bob":   {session: 0.5, gpu: 2 * 0.5},
		}},
		{"one user", "bob", f.since, f.until, map[string]row{"bob": {session: 0.5, gpu: 2 * 0.5}}},
		{"a user with nothing has a row of zeros", "carol", f.since, f.until, map[string]row{"carol": {}}},
		{"the whole history", "", f.since.Add(-10 * time.Hour), f.until.Add(10 * time.Hour), map[string]row{
			"alice": {job: 3 + 11 + 2, cpu: 2*(3+11) + 0.5*2, gpu: 3 + 11, session: 1.5},
			"bob":   {job: 1, cpu: 1, session: 10.5, gpu: 2 * 10.5},
		}},
		{"a later window: only what is still open", "", f.until.Add(5 * time.Hour), f.until.Add(6 * time.Hour), map[string]row{
			"alice": {job: 1, cpu: 2, gpu: 1},
			"bob":   {session: 1, gpu: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := f.db.Usage(context.Background(), tt.since, tt.until, dspool.UsageByUser, tt.user)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]row{}
			for _, u := range rep.Users {
				got[u.User] = row{u.JobSeconds / 3600, u.CPUSeconds / 3600, u.GPUSeconds / 3600, u.SessionSeconds / 3600}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for name, w := range tt.want {
				g, ok := got[name]
				if !ok || !near(g.job, w.job) || !near(g.cpu, w.cpu) || !near(g.gpu, w.gpu) || !near(g.session, w.session) {
					t.Errorf("%s: got %+v hours, want %+v", name, g, w)
				}
			}
		})
	}
}

func TestUsageRefusesAnUnknownGrouping(t *testing.T) {
	db := openAt(t, newClock())
	_, err := db.Usage(context.Background(), time.Now().Add(-time.Hour), time.Now(), "team", "")
	if dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("by team: got %v, want invalid", err)
	}
}
