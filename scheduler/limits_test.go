package scheduler_test

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/scheduler"
)

func ptr[T any](v T) *T { return &v }

// owned returns j counted against user and team.
func owned(j scheduler.Job, user, team string) scheduler.Job { j.User, j.Team = user, team; return j }

func gpuLimit(n int) dspool.Limits     { return dspool.Limits{GPUs: ptr(n)} }
func cpuLimit(c float64) dspool.Limits { return dspool.Limits{CPUs: ptr(cpus(c))} }
func memLimit(g float64) dspool.Limits { return dspool.Limits{Memory: ptr(gib(g))} }
func team(name string, q scheduler.Quota) scheduler.Quotas {
	return scheduler.Quotas{Teams: map[string]scheduler.Quota{name: q}}
}

func TestPlanWithin(t *testing.T) {
	gpus4 := node("g", 8, 32, 0, 1, 2, 3)
	tests := []struct {
		name  string
		nodes []scheduler.Node
		jobs  []scheduler.Job
		q     scheduler.Quotas
		want  []scheduler.Placement
		held  []scheduler.Held
	}{{
		name:  "a team at its gpu limit waits with the reason",
		nodes: []scheduler.Node{gpus4},
		jobs:  []scheduler.Job{owned(job(1, 1, 1, 1), "ann", "vision")},
		q:     team("vision", scheduler.Quota{Limits: gpuLimit(2), Used: scheduler.Usage{GPUs: 2}}),
		held:  []scheduler.Held{{Job: 1, Reason: "team vision: 2 of 2 gpus in use"}},
	}, {
		name:  "one of one: the unit in the singular",
		nodes: []scheduler.Node{gpus4},
		jobs:  []scheduler.Job{owned(job(1, 1, 1, 1), "ann", "vision")},
		q:     team("vision", scheduler.Quota{Limits: gpuLimit(1), Used: scheduler.Usage{GPUs: 1}}),
		held:  []scheduler.Held{{Job: 1, Reason: "team vision: 1 of 1 gpu in use"}},
	}, {
		name:  "a limit lowered below what is in use says so plainly",
		nodes: []scheduler.Node{gpus4},
		jobs:  []scheduler.Job{owned(job(1, 1, 1, 1), "ann", "")},
		q:     scheduler.Quotas{Users: map[string]scheduler.Quota{"ann": {Limits: gpuLimit(1), Used: scheduler.Usage{GPUs: 2}}}},
		held:  []scheduler.Held{{Job: 1, Reason: "user ann: 2 gpus in use, and the limit is 1"}},
	}, {
		name:  "what the plan places counts against the limit",
		nodes: []scheduler.Node{gpus4},
		jobs:  []scheduler.Job{owned(job(1, 1, 1, 1), "ann", "vision"), owned(job(2, 1, 1, 1), "bob", "vision"), owned(job(3, 1, 1, 1), "ann", "vision")},
		q:     team("vision", scheduler.Quota{Limits: gpuLimit(3), Used: scheduler.Usage{GPUs: 1}}),
		want:  []scheduler.Placement{{Job: 1, Node: "g", GPUs: []int{0}}, {Job: 2, Node: "g", GPUs: []int{1}}},
		held:  []scheduler.Held{{Job: 3, Reason: "team vision: 3 of 3 gpus in use"}},
	}, {
		name:  "other teams and users without limits are not held",
		nodes: []scheduler.Node{gpus4},
		jobs:  []scheduler.Job{owned(job(1, 1, 1, 1), "ann", "vision"), owned(job(2, 1, 1, 1), "cy", "nlp"), owned(job(3, 1, 1, 1), "cy", "")},
		q:     team("vision", scheduler.Quota{Limits: gpuLimit(0)}),
		want:  []scheduler.Placement{{Job: 2, Node: "g", GPUs: []int{0}}, {Job: 3, Node: "g", GPUs: []int{1}}},
		held:  []scheduler.Held{{Job: 1, Reason: "team vision may hold 0 gpus at once, and it needs 1"}},
	}, {
		name:  "a smaller job of the same team still fits under the limit",
		nodes: []scheduler.Node{node("n", 8, 32)},
		jobs:  []scheduler.Job{owned(job(1, 4, 1, 0), "ann", "vision"), owned(job(2, 1, 1, 0), "ann", "vision")},
		q:     team("vision", scheduler.Quota{Limits: cpuLimit(6), Used: scheduler.Usage{CPUs: cpus(3)}}),
		want:  []scheduler.Placement{{Job: 2, Node: "n"}},
		held:  []scheduler.Held{{Job: 1, Reason: "team vision: 3 of 6 cpus in use, and it needs 4"}},
	}, {
		name:  "a user's own limit holds across teams",
		nodes: []scheduler.Node{node("n", 8, 32)},
		jobs:  []scheduler.Job{owned(job(1, 1, 2, 0), "ann", "vision"), owned(job(2, 1, 2, 0), "ann", "nlp"), owned(job(3, 1, 2, 0), "ann", "")},
		q:     scheduler.Quotas{Users: map[string]scheduler.Quota{"ann": {Limits: memLimit(4)}}},
		want:  []scheduler.Placement{{Job: 1, Node: "n"}, {Job: 2, Node: "n"}},
		held:  []scheduler.Held{{Job: 3, Reason: "user ann: 4GiB of 4GiB memory in use"}},
	}, {
		name:  "the team's limit is checked before the user's",
		nodes: []scheduler.Node{node("n", 8, 32)},
		jobs:  []scheduler.Job{owned(job(1, 2, 1, 0), "ann", "vision")},
		q: scheduler.Quotas{Users: map[string]scheduler.Quota{"ann": {Limits: cpuLimit(1)}},
			Teams: map[string]scheduler.Quota{"vision": {Limits: cpuLimit(1)}}},
		held: []scheduler.Held{{Job: 1, Reason: "team vision may hold 1 cpu at once, and it needs 2"}},
	}, {
		name:  "a held job lets a lower-priority job of another team run",
		nodes: []scheduler.Node{gpus4},
		jobs:  []scheduler.Job{withPriority(owned(job(1, 1, 1, 4), "ann", "vision"), 9), owned(job(2, 1, 1, 4), "cy", "nlp")},
		q:     team("vision", scheduler.Quota{Limits: gpuLimit(8), Used: scheduler.Usage{GPUs: 6}}),
		want:  []scheduler.Placement{{Job: 2, Node: "g", GPUs: []int{0, 1, 2, 3}}},
		held:  []scheduler.Held{{Job: 1, Reason: "team vision: 6 of 8 gpus in use, and it needs 4"}},
	}, {
		name:  "a job held by its limit is not remembered as a shape no node fits",
		nodes: []scheduler.Node{node("n", 8, 32)},
		jobs:  []scheduler.Job{owned(job(1, 2, 1, 0), "ann", "vision"), owned(job(2, 2, 1, 0), "cy", "nlp")},
		q:     team("vision", scheduler.Quota{Limits: cpuLimit(1)}),
		want:  []scheduler.Placement{{Job: 2, Node: "n"}},
		held:  []scheduler.Held{{Job: 1, Reason: "team vision may hold 1 cpu at once, and it needs 2"}},
	}, {
		name:  "a job that fits no node is not charged",
		nodes: []scheduler.Node{node("n", 2, 32)},
		jobs:  []scheduler.Job{owned(job(1, 4, 1, 0), "ann", "vision"), owned(job(2, 2, 1, 0), "ann", "vision")},
		q:     team("vision", scheduler.Quota{Limits: cpuLimit(4)}),
		want:  []scheduler.Placement{{Job: 2, Node: "n"}},
	}, {
		name:  "no limits: the same plan as Plan",
		nodes: []scheduler.Node{node("n", 2, 32)},
		jobs:  []scheduler.Job{owned(job(1, 1, 1, 0), "ann", "vision"), owned(job(2, 1, 1, 0), "ann", "vision")},
		want:  []scheduler.Placement{{Job: 1, Node: "n"}, {Job: 2, Node: "n"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, held := scheduler.PlanWithin(tt.nodes, tt.jobs, tt.q)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placements:\ngot  %+v\nwant %+v", got, tt.want)
			}
			if !reflect.DeepEqual(held, tt.held) {
				t.Errorf("held:\ngot  %+v\nwant %+v", held, tt.held)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	tests := []struct {
		name string
		jobs []scheduler.Job
		q    scheduler.Quotas
		want []scheduler.Held
	}{{
		name: "jobs ahead in the queue count, as though they ran",
		jobs: []scheduler.Job{owned(job(3, 1, 1, 2), "ann", "vision"), owned(job(1, 1, 1, 2), "ann", "vision"), owned(job(2, 1, 1, 2), "bob", "vision")},
		q:    team("vision", scheduler.Quota{Limits: gpuLimit(8), Used: scheduler.Usage{GPUs: 4}}),
		want: []scheduler.Held{{Job: 3, Reason: "team vision: 4 of 8 gpus in use and 4 more wanted by jobs ahead of it"}},
	}, {
		name: "priority decides who is ahead",
		jobs: []scheduler.Job{owned(job(1, 1, 1, 2), "ann", "vision"), withPriority(owned(job(2, 1, 1, 2), "ann", "vision"), 1)},
		q:    team("vision", scheduler.Quota{Limits: gpuLimit(3)}),
		want: []scheduler.Held{{Job: 1, Reason: "team vision: 0 of 3 gpus in use and 2 more wanted by jobs ahead of it, and it needs 2"}},
	}, {
		name: "a held job is not charged, so a smaller one behind it passes",
		jobs: []scheduler.Job{owned(job(1, 3, 1, 0), "ann", ""), owned(job(2, 2, 1, 0), "ann", "")},
		q:    scheduler.Quotas{Users: map[string]scheduler.Quota{"ann": {Limits: cpuLimit(3), Used: scheduler.Usage{CPUs: cpus(1)}}}},
		want: []scheduler.Held{{Job: 1, Reason: "user ann: 1 of 3 cpus in use, and it needs 3"}},
	}, {
		name: "jobs of any pool count against one limit",
		jobs: []scheduler.Job{inPool(owned(job(1, 1, 1, 0), "ann", "vision"), "b"), owned(job(2, 1, 1, 0), "ann", "vision")},
		q:    team("vision", scheduler.Quota{Limits: memLimit(1.5)}),
		want: []scheduler.Held{{Job: 2, Reason: "team vision: 0B of 1.5GiB memory in use and 1GiB more wanted by jobs ahead of it, and it needs 1GiB"}},
	}, {
		name: "no limits",
		jobs: []scheduler.Job{owned(job(1, 1, 1, 0), "ann", "vision")},
		want: nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scheduler.Admit(tt.jobs, tt.q); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Admit:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestQuotasCheck(t *testing.T) {
	q := scheduler.Quotas{
		Users: map[string]scheduler.Quota{"ann": {Limits: cpuLimit(4), Used: scheduler.Usage{CPUs: cpus(3)}}},
		Teams: map[string]scheduler.Quota{"vision": {Limits: memLimit(8), Used: scheduler.Usage{Memory: gib(7)}}},
	}
	tests := []struct {
		name, user, team string
		want             scheduler.Usage
		why              string
		userLimit        bool
	}{
		{"fits", "ann", "", scheduler.Usage{CPUs: cpus(1), Memory: gib(64)}, "", false},
		{"over the user's cpus", "ann", "", scheduler.Usage{CPUs: cpus(2)}, "user ann: 3 of 4 cpus in use, and it needs 2", true},
		{"over the team's memory", "bob", "vision", scheduler.Usage{CPUs: cpus(8), Memory: gib(2)}, "team vision: 7GiB of 8GiB memory in use, and it needs 2GiB", false},
		{"no limit", "bob", "nlp", scheduler.Usage{CPUs: cpus(100)}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, user := q.Check(tt.user, tt.team, tt.want); got != tt.why || user != tt.userLimit {
				t.Errorf("Check(%s, %s, %+v) = %q, %v; want %q, %v", tt.user, tt.team, tt.want, got, user, tt.why, tt.userLimit)
			}
		})
	}
}

// TestPlanWithinNeverExceedsLimits: on random clusters and queues, what the
// plan places plus what was in use stays within every limit, a job is
// either placed, held or left, never two of them, and the inputs are left
// as they were.
func TestPlanWithinNeverExceedsLimits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	users := []string{"ann", "bob", "cy"}
	teams := []string{"", "vision", "nlp"}
	for round := 0; round < 200; round++ {
		nodes, jobs := randomCluster(r, 1+r.IntN(20), r.IntN(200))
		for i := range jobs {
			jobs[i].User, jobs[i].Team = users[r.IntN(3)], teams[r.IntN(3)]
		}
		q := scheduler.Quotas{Users: map[string]scheduler.Quota{}, Teams: map[string]scheduler.Quota{}}
		for _, u := range users[:2] {
			q.Users[u] = scheduler.Quota{Limits: dspool.Limits{CPUs: ptr(cpus(float64(r.IntN(20))))}, Used: scheduler.Usage{CPUs: cpus(float64(r.IntN(5)))}}
		}
		for _, tm := range teams[1:] {
			q.Teams[tm] = scheduler.Quota{Limits: dspool.Limits{GPUs: ptr(r.IntN(6)), Memory: ptr(gib(float64(r.IntN(64))))},
				Used: scheduler.Usage{GPUs: r.IntN(2), Memory: gib(float64(r.IntN(8)))}}
		}
		before := slices.Clone(jobs)
		got, held := scheduler.PlanWithin(nodes, jobs, q)
		if !reflect.DeepEqual(jobs, before) {
			t.Fatal("PlanWithin modified jobs")
		}
		byID := map[int64]scheduler.Job{}
		for _, j := range jobs {
			byID[j.ID] = j
		}
		seen := map[int64]bool{}
		userUse, teamUse := map[string]scheduler.Usage{}, map[string]scheduler.Usage{}
		for _, p := range got {
			j := byID[p.Job]
			seen[p.Job] = true
			u := scheduler.Usage{CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs}
			userUse[j.User] = userUse[j.User].Add(u)
			teamUse[j.Team] = teamUse[j.Team].Add(u)
		}
		for _, h := range held {
			if seen[h.Job] || h.Reason == "" {
				t.Fatalf("round %d: job %d held (%q) and placed, or held without a reason", round, h.Job, h.Reason)
			}
			seen[h.Job] = true
		}
		for u, qu := range q.Users {
			if total := qu.Used.CPUs + userUse[u].CPUs; total > *qu.Limits.CPUs && userUse[u].CPUs > 0 {
				t.Fatalf("round %d: user %s holds %s cpus, limit %s", round, u, total, *qu.Limits.CPUs)
			}
		}
		for tm, qu := range q.Teams {
			use := teamUse[tm]
			if use.GPUs > 0 && qu.Used.GPUs+use.GPUs > *qu.Limits.GPUs || use.Memory > 0 && qu.Used.Memory+use.Memory > *qu.Limits.Memory {
				t.Fatalf("round %d: team %s holds %d gpus and %s, limits %d and %s", round, tm, qu.Used.GPUs+use.GPUs, qu.Used.Memory+use.Memory, *qu.Limits.GPUs, *qu.Limits.Memory)
			}
		}
		plain, none := scheduler.PlanWithin(nodes, jobs, scheduler.Quotas{})
		if !reflect.DeepEqual(plain, scheduler.Plan(nodes, jobs)) || none != nil {
			t.Fatalf("round %d: PlanWithin without limits differs from Plan", round)
		}
	}
}

// An array's cap holds its tasks past the cap, counting the tasks that run
// and those placed earlier in the same plan, in Plan and in Admit alike;
// other work goes on.
func TestArrayCap(t *testing.T) {
	n := node("n", 16, 64)
	var jobs []scheduler.Job
	for i := range 6 {
		j := job(int64(10+i), 1, 1, 0)
		j.Array = 10
		jobs = append(jobs, j)
	}
	jobs = append(jobs, job(20, 1, 1, 0)) // not a task
	q := scheduler.Quotas{Arrays: map[int64]scheduler.ArrayCap{10: {Max: 3, Running: 1}}}
	plan, held := scheduler.PlanWithin([]scheduler.Node{n}, jobs, q)
	var placed []int64
	for _, p := range plan {
		placed = append(placed, p.Job)
	}
	if want := []int64{10, 11, 20}; !slices.Equal(placed, want) {
		t.Fatalf("placed %v, want %v (1 task running, a cap of 3)", placed, want)
	}
	if len(held) != 4 || held[0].Job != 12 || held[0].Reason != "array 10: 3 of 3 tasks running at once (--array ...%3)" {
		t.Fatalf("held %v", held)
	}
	if admitted := scheduler.Admit(jobs, q); len(admitted) != 4 {
		t.Fatalf("Admit held %d tasks, want 4", len(admitted))
	}
}
