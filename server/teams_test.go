package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/store"
)

// member is a user who is not an admin, with a client of their own.
type member struct {
	*dspool.User
	c *api.Client
}

func newUser(t *testing.T, p *dspooltest.Pool, name string) member {
	t.Helper()
	u, err := p.DB.CreateUser(context.Background(), name, false)
	if err != nil {
		t.Fatal(err)
	}
	return member{u, p.ClientFor(u)}
}

// newTeam creates a team as the admin with these members (the first a
// maintainer when maintainer is set) and limits.
func newTeam(t *testing.T, p *dspooltest.Pool, name string, l dspool.Limits, maintainer bool, members ...member) {
	t.Helper()
	ctx := context.Background()
	if _, err := p.Admin.CreateTeam(ctx, name); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		if _, err := p.Admin.AddTeamMember(ctx, name, m.Name, maintainer && i == 0); err != nil {
			t.Fatal(err)
		}
	}
	if !l.None() {
		if _, err := p.Admin.SetTeamLimits(ctx, name, l); err != nil {
			t.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// untilFile is a command that runs until the file go appears in its job
// directory.
var untilFile = []string{"sh", "-c", "while [ ! -e go ]; do sleep 0.05; done"}

// release lets a job running untilFile end, once it has started.
func release(t *testing.T, p *dspooltest.Pool, id int64) {
	t.Helper()
	waitJob(t, p, p.Admin, id, "started", func(j *dspool.Job) bool { return j.StartedAt != nil })
	if err := os.WriteFile(filepath.Join(p.Share, "jobs", strconv.FormatInt(id, 10), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitJob(t *testing.T, p *dspooltest.Pool, c *api.Client, id int64, what string, cond func(*dspool.Job) bool) *dspool.Job {
	t.Helper()
	var j *dspool.Job
	p.Eventually(15*time.Second, func() bool {
		d, err := c.Job(context.Background(), id)
		if err != nil {
			return false
		}
		j = d.Job
		if testing.Verbose() {
			t.Logf("job %d: %s held=%v waiting=%q", id, j.State, j.Held, j.Waiting)
		}
		return cond(j)
	}, "job %d: %s", id, what)
	if j == nil {
		t.Fatal("no job")
	}
	return j
}

// TestTeamGPULimitHoldsWork: a member of a team at its GPU limit waits in
// the queue, with the reason, while a GPU is free; work of another team
// takes that GPU; the held job runs once the team's running job ends.
func TestTeamGPULimitHoldsWork(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, NodeGPUs: 3, NodeCPUs: 4000, NodeMemory: 4 << 30, UIDBase: 49000})
	ctx := context.Background()
	ann, bob, cy := newUser(t, p, "ann"), newUser(t, p, "bob"), newUser(t, p, "cy")
	newTeam(t, p, "vision", dspool.Limits{GPUs: ptr(1)}, false, ann, bob)
	newTeam(t, p, "nlp", dspool.Limits{}, false, cy)

	first := submit(t, ann.c, dspool.JobSpec{GPUs: 1, Memory: 64 << 20, Command: untilFile})
	if first.Team != "vision" {
		t.Fatalf("ann's job runs for team %q, want vision, her only team", first.Team)
	}
	waitJob(t, p, ann.c, first.ID, "running", func(j *dspool.Job) bool { return j.State == dspool.JobRunning })

	second := submit(t, bob.c, dspool.JobSpec{GPUs: 1, Memory: 64 << 20, Command: []string{"true"}})
	j := waitJob(t, p, bob.c, second.ID, "held with the reason", func(j *dspool.Job) bool { return j.Held })
	if j.State != dspool.JobQueued || j.Waiting != "team vision: 1 of 1 gpu in use" {
		t.Fatalf("bob's job: %s, waiting %q; want queued, waiting %q", j.State, j.Waiting, "team vision: 1 of 1 gpu in use")
	}
	l, err := bob.c.Jobs(ctx, api.JobQuery{})
	if err != nil || len(l.Jobs) != 1 || l.Jobs[0].Waiting != j.Waiting || !l.Jobs[0].Held {
		t.Fatalf("bob's job list: %+v %v; want the job with its wait", l, err)
	}

	// Another team's work takes a free GPU meanwhile.
	other := submit(t, cy.c, dspool.JobSpec{GPUs: 1, Memory: 64 << 20, Command: []string{"true"}})
	if got := p.Wait(cy.c, other.ID); got.State != dspool.JobSucceeded || got.Team != "nlp" {
		t.Fatalf("cy's job: %s for team %q, want succeeded for nlp", got.State, got.Team)
	}
	if j, _ := bob.c.Job(ctx, second.ID); j.State != dspool.JobQueued {
		t.Fatalf("bob's job is %s while team vision is at its limit, want queued", j.State)
	}

	release(t, p, first.ID)
	if got := p.Wait(bob.c, second.ID); got.State != dspool.JobSucceeded || got.Held || got.Waiting != "" {
		t.Fatalf("bob's job after ann's ended: %s, held %v, waiting %q; want succeeded", got.State, got.Held, got.Waiting)
	}
}

// TestSessionsCountAgainstLimits: a session's reservation is its user's
// and team's usage; a login that would go over a limit is refused with the
// reason, and held work runs once the session ends.
func TestSessionsCountAgainstLimits(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, NodeCPUs: 4000, NodeMemory: 8 << 30, UIDBase: 49100})
	ctx := context.Background()
	ann, bob := newUser(t, p, "ann"), newUser(t, p, "bob")
	newTeam(t, p, "vision", dspool.Limits{CPUs: ptr(dspool.MilliCPU(2000))}, false, ann, bob)

	lease, err := p.Server.OpenSession(ctx, ann.User, "", "test", "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	job := submit(t, bob.c, dspool.JobSpec{CPUs: 2000, Memory: 64 << 20, Command: []string{"true"}})
	want := "team vision: 1 of 2 cpus in use, and it needs 2"
	j := waitJob(t, p, bob.c, job.ID, "held by ann's session", func(j *dspool.Job) bool { return j.Held })
	if j.Waiting != want {
		t.Fatalf("bob's job waits %q, want %q", j.Waiting, want)
	}

	// Bob's login would take the team to 2 of 2: allowed; a third is not.
	bl, err := p.Server.OpenSession(ctx, bob.User, "", "test", "test", nil)
	if err != nil {
		t.Fatalf("bob's login under the limit: %v", err)
	}
	cy := newUser(t, p, "cy")
	if _, err := p.Admin.AddTeamMember(ctx, "vision", cy.Name, false); err != nil {
		t.Fatal(err)
	}
	_, err = p.Server.OpenSession(ctx, cy.User, "", "test", "test", nil)
	if dspool.ErrorCode(err) != dspool.EUnavailable || !strings.Contains(err.Error(), "team vision: 2 of 2 cpus in use") {
		t.Fatalf("cy's login over the team's limit: %v; want it refused with the reason", err)
	}
	// Joining one's own session takes nothing more.
	again, err := p.Server.OpenSession(ctx, ann.User, "", "test", "test", nil)
	if err != nil || again.ID() != lease.ID() {
		t.Fatalf("ann's second connection: %v; want it to join her session", err)
	}
	again.Close()
	lease.Close()
	bl.Close()
	if got := p.Wait(bob.c, job.ID); got.State != dspool.JobSucceeded {
		t.Fatalf("bob's job after the sessions ended: %s", got.State)
	}
	// A login refused by the user's own limit points to it, not to the
	// teams.
	if _, err := p.Admin.SetUserLimits(ctx, cy.Name, dspool.Limits{CPUs: ptr(dspool.MilliCPU(0))}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Server.OpenSession(ctx, cy.User, "", "test", "test", nil)
	if dspool.ErrorCode(err) != dspool.EUnavailable || !strings.Contains(err.Error(), "user cy may hold 0 cpus at once") ||
		!strings.HasSuffix(err.Error(), "(`dspool user limits cy`)") {
		t.Fatalf("cy's login over his own limit: %v; want it refused, pointing to his limits", err)
	}
}

// TestPoolGrants: a pool granted to teams takes work only from their
// members (and admins); a job names its team when its user has several.
func TestPoolGrants(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49200})
	ctx := context.Background()
	ann, out := newUser(t, p, "ann"), newUser(t, p, "out")
	newTeam(t, p, "vision", dspool.Limits{}, false, ann)
	newTeam(t, p, "nlp", dspool.Limits{}, false)

	gpu := &dspool.Pool{Name: "gpu", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Teams: []string{"vision", "nlp"}}
	if _, err := p.Admin.ApplyPools(ctx, []*dspool.Pool{{Name: "x", Provider: dspool.Provider(dspool.ProviderStatic), Node: gpu.Node, Teams: []string{"vision", "nope"}}}); dspool.ErrorCode(err) != dspool.EInvalid ||
		!strings.Contains(err.Error(), "pools[0].teams[1]: no team named nope") {
		t.Fatalf("a pool granted to a team that does not exist: %v; want it refused naming the field", err)
	}
	applyPool(t, p, gpu)

	spec := dspool.JobSpec{Pool: "gpu", Command: []string{"true"}}
	_, err := out.c.SubmitJob(ctx, &spec, 0)
	if dspool.ErrorCode(err) != dspool.EForbidden || !strings.Contains(err.Error(), "pool gpu is for teams nlp and vision") {
		t.Fatalf("a user in no granted team: %v; want forbidden, naming the teams", err)
	}
	if _, err := out.c.StartNotebook(ctx, "gpu"); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Fatalf("a notebook in a pool the user may not use: %v; want forbidden", err)
	}
	if _, err := p.Server.OpenSession(ctx, out.User, "gpu", "test", "test", nil); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Fatalf("a login to a pool the user may not use: %v; want forbidden", err)
	}
	if j := submit(t, ann.c, spec); j.Team != "vision" {
		t.Fatalf("ann's job runs for %q, want vision", j.Team)
	}
	// The default pool is open: out's jobs run there, for no team.
	if j := submit(t, out.c, dspool.JobSpec{Command: []string{"true"}}); j.Team != "" {
		t.Fatalf("a job in the open pool of a user in no team runs for %q, want none", j.Team)
	}

	if _, err := p.Admin.AddTeamMember(ctx, "nlp", ann.Name, false); err != nil {
		t.Fatal(err)
	}
	_, err = ann.c.SubmitJob(ctx, &spec, 0)
	if dspool.ErrorCode(err) != dspool.EInvalid || !strings.Contains(err.Error(), "--team") {
		t.Fatalf("a user in two granted teams naming none: %v; want it to ask for --team", err)
	}
	withTeam := spec
	withTeam.Team = "nlp"
	if j := submit(t, ann.c, withTeam); j.Team != "nlp" {
		t.Fatalf("ann's job with --team nlp runs for %q", j.Team)
	}
	withTeam.Team = "vision"
	if _, err := out.c.SubmitJob(ctx, &withTeam, 0); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Fatalf("a job for a team its user is not in: %v; want forbidden", err)
	}
	if j := submit(t, p.Admin, spec); j.Team != "" {
		t.Fatalf("the admin's job runs for %q, want none", j.Team)
	}
	if err := p.Admin.DeleteTeam(ctx, "nlp"); dspool.ErrorCode(err) != dspool.EConflict {
		t.Fatalf("deleting a team a pool is granted to: %v; want conflict", err)
	}

	// A job bigger than its team may ever hold is refused at once.
	if _, err := p.Admin.SetTeamLimits(ctx, "vision", dspool.Limits{CPUs: ptr(dspool.MilliCPU(500))}); err != nil {
		t.Fatal(err)
	}
	withTeam.Team = "vision"
	if _, err := ann.c.SubmitJob(ctx, &withTeam, 0); dspool.ErrorCode(err) != dspool.EInvalid || !strings.Contains(err.Error(), "team vision may hold 0.5") {
		t.Fatalf("a job over its team's limit on its own: %v; want invalid", err)
	}
}

// TestTeamMaintainers: a maintainer manages the members of their own team
// and nothing else; admins manage everything; every change is audited.
func TestTeamMaintainers(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49300})
	ctx := context.Background()
	ann, bob, cy := newUser(t, p, "ann"), newUser(t, p, "bob"), newUser(t, p, "cy")
	newTeam(t, p, "vision", dspool.Limits{}, true, ann)
	newTeam(t, p, "nlp", dspool.Limits{}, false, cy)

	tm, err := ann.c.AddTeamMember(ctx, "vision", bob.Name, false)
	if err != nil || tm.Member("bob") == nil {
		t.Fatalf("the maintainer adds bob: %+v %v", tm, err)
	}
	if tm, err = ann.c.AddTeamMember(ctx, "vision", bob.Name, false); err != nil || tm.Member("bob") == nil {
		t.Fatalf("the maintainer adds bob again: %+v %v; want nothing to change", tm, err)
	}
	forbidden := []struct {
		what string
		err  error
	}{
		{"adding to another team", func() error { _, err := ann.c.AddTeamMember(ctx, "nlp", bob.Name, false); return err }()},
		{"naming a maintainer", func() error { _, err := ann.c.AddTeamMember(ctx, "vision", cy.Name, true); return err }()},
		{"removing a maintainer", func() error { _, err := ann.c.RemoveTeamMember(ctx, "vision", ann.Name); return err }()},
		{"setting limits", func() error { _, err := ann.c.SetTeamLimits(ctx, "vision", dspool.Limits{GPUs: ptr(100)}); return err }()},
		{"creating a team", func() error { _, err := ann.c.CreateTeam(ctx, "mine"); return err }()},
		{"deleting the team", ann.c.DeleteTeam(ctx, "vision")},
		{"setting user limits", func() error { _, err := ann.c.SetUserLimits(ctx, bob.Name, dspool.Limits{}); return err }()},
		{"a plain member adding", func() error { _, err := bob.c.AddTeamMember(ctx, "vision", cy.Name, false); return err }()},
		{"reading another user's limits", func() error { _, err := bob.c.UserLimits(ctx, ann.Name); return err }()},
	}
	for _, f := range forbidden {
		if dspool.ErrorCode(f.err) != dspool.EForbidden {
			t.Errorf("ann or bob %s: %v; want forbidden", f.what, f.err)
		}
	}
	if tm, err = ann.c.RemoveTeamMember(ctx, "vision", bob.Name); err != nil || tm.Member("bob") != nil {
		t.Fatalf("the maintainer removes bob: %+v %v", tm, err)
	}
	if ul, err := bob.c.UserLimits(ctx, bob.Name); err != nil || ul.Limits.String() != "none" {
		t.Fatalf("bob reads his own limits: %+v %v", ul, err)
	}
	if _, err := p.Admin.SetUserLimits(ctx, bob.Name, dspool.Limits{GPUs: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.DeleteTeam(ctx, "nlp"); err != nil {
		t.Fatal(err)
	}

	entries, err := p.DB.Audit(ctx, store.AuditFilter{Action: "team"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Actor+" "+e.Action+" "+e.Target+" "+e.Detail)
	}
	for _, want := range []string{"ann team.member_add team vision member bob", "ann team.member_remove team vision member bob",
		"admin49300 team.delete team nlp "} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("audit log lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if n := strings.Count(strings.Join(got, "\n"), "ann team.member_add team vision member bob"); n != 1 {
		t.Errorf("bob's addition is in the audit log %d times, want once (adding him again changed nothing):\n%s", n, strings.Join(got, "\n"))
	}
	if entries, _ := p.DB.Audit(ctx, store.AuditFilter{Action: "user.limits"}); len(entries) != 1 || entries[0].Detail != "2 gpus" {
		t.Errorf("audit log of user limits: %+v", entries)
	}
}

// TestLimitsAndAutoscaling: work held by a limit brings no node, and a
// team's nodes limit caps the nodes its waiting work brings.
func TestLimitsAndAutoscaling(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49400})
	ctx := context.Background()
	prov := p.UseProvider()
	ann, cy := newUser(t, p, "ann"), newUser(t, p, "cy")
	newTeam(t, p, "vision", dspool.Limits{GPUs: ptr(2)}, false, ann)
	newTeam(t, p, "nlp", dspool.Limits{Nodes: ptr(1)}, false, cy)
	applyPool(t, p, &dspool.Pool{Name: "gpu", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30, GPUs: 1}, Autoscale: &dspool.Autoscale{Max: 8}})

	var ids []int64
	for i := 0; i < 4; i++ {
		ids = append(ids, submit(t, ann.c, dspool.JobSpec{Pool: "gpu", GPUs: 1, Memory: 64 << 20, Command: untilFile}).ID)
	}
	for _, id := range ids[2:] {
		waitJob(t, p, ann.c, id, "held", func(j *dspool.Job) bool {
			return j.Held && strings.HasPrefix(j.Waiting, "team vision: ")
		})
	}
	for _, id := range ids[:2] {
		waitJob(t, p, ann.c, id, "running", func(j *dspool.Job) bool { return j.State == dspool.JobRunning })
	}
	if g, _ := prov.Counts(); g != 2 {
		t.Fatalf("%d nodes asked for; the team may run 2 one-gpu jobs at once, so 2", g)
	}

	// nlp may have one node added for its work: three jobs bring one.
	// They go last in the queue: cy has used less than ann, and fair share
	// would otherwise give cy the node ann's job leaves below.
	var nlp []int64
	for i := 0; i < 3; i++ {
		nlp = append(nlp, submit(t, cy.c, dspool.JobSpec{Pool: "gpu", GPUs: 1, Memory: 64 << 20, Priority: ptr(-dspool.MaxPriority), Command: untilFile}).ID)
	}
	waitJob(t, p, cy.c, nlp[0], "running", func(j *dspool.Job) bool { return j.State == dspool.JobRunning })
	for _, id := range nlp[1:] {
		j := waitJob(t, p, cy.c, id, "waiting on its team's nodes", func(j *dspool.Job) bool {
			return strings.Contains(j.Waiting, "team nlp may have 1 node for its work")
		})
		if j.Held {
			t.Errorf("job %d is held, want it only kept from bringing a node: %q", id, j.Waiting)
		}
	}
	if g, _ := prov.Counts(); g != 3 {
		t.Fatalf("%d nodes asked for in all, want 3: 2 for vision, 1 for nlp", g)
	}

	// When vision's job ends, its held job takes the node it leaves.
	release(t, p, ids[0])
	waitJob(t, p, ann.c, ids[2], "running on the freed node", func(j *dspool.Job) bool { return j.State == dspool.JobRunning })
	// Cancel what waits first, so that nothing starts as the test ends.
	all := append(append([]int64{}, ids...), nlp...)
	for _, running := range []bool{false, true} {
		for _, id := range all {
			if d, err := p.Admin.Job(ctx, id); err != nil || (d.State == dspool.JobRunning) != running {
				continue
			}
			if _, err := p.Admin.CancelJob(ctx, id); err != nil && dspool.ErrorCode(err) != dspool.EConflict {
				t.Fatal(err)
			}
		}
	}
	for _, id := range all {
		p.Wait(p.Admin, id)
	}
	if g, _ := prov.Counts(); g != 3 {
		t.Fatalf("%d nodes asked for in all, want 3", g)
	}
}
