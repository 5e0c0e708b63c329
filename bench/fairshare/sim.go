package main

import (
	"cmp"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/fairshare"
	"github.com/dspool/dspool/scheduler"
)

// policy is one way of ordering the queue.
type policy struct {
	Name    string `json:"name"`
	Fair    bool   `json:"fair_share"`   // scores by fair share and age (else priority, then age: dspool before fair share)
	Reserve bool   `json:"reservations"` // jobs that waited ReserveAfter reserve a node
}

var policies = []policy{
	{Name: "fifo, backfill without reservations (before)"},
	{Name: "fair share, no reservations", Fair: true},
	{Name: "fair share + reservations (dspool)", Fair: true, Reserve: true},
}

// simResult is what one policy did with the trace.
type simResult struct {
	Policy policy `json:"policy"`
	// Shares are the heavy users' parts of what the heavy users got,
	// against their targets.
	Shares       []userShare `json:"shares"`
	MaxDeviation float64     `json:"max_deviation"` // the largest |got - target| / target
	// Waits of the light users' jobs (they do not flood, so their wait is
	// the scheduler's doing), large and small, and of every job.
	LightLargeP95 float64 `json:"light_large_p95_s"`
	LightSmallP95 float64 `json:"light_small_p95_s"`
	AllLargeP95   float64 `json:"all_large_p95_s"`
	AllSmallP95   float64 `json:"all_small_p95_s"`
	Utilization   float64 `json:"utilization"` // of the cpus, over the trace
	Passes        int     `json:"passes"`
	PassP50Us     float64 `json:"pass_p50_us"` // the whole pass: factors, scores, plan
	PassMaxUs     float64 `json:"pass_max_us"`
	RunMs         float64 `json:"run_ms"`
}

type userShare struct {
	User   string  `json:"user"`
	Target float64 `json:"target"`
	Got    float64 `json:"got"`
}

type running struct {
	job  *tjob
	node int
	at   time.Time
}

// tick is how often a pass runs without an event, as the server's loop
// runs once a second; a minute is enough at the trace's scale.
const tick = time.Minute

// simulate replays trace on the cluster under p, with a pass at every
// arrival, every end and every tick, as the server's loop does with
// fairshare and scheduler.
func simulate(trace []tjob, end time.Time, p policy, cfg fairshare.Config) simResult {
	began := time.Now()
	res := simResult{Policy: p}
	freeCPU := make([]dspool.MilliCPU, nodeCount)
	freeMem := make([]dspool.Bytes, nodeCount)
	ids := make([]string, nodeCount)
	for i := range freeCPU {
		freeCPU[i], freeMem[i] = nodeCPUs*1000, dspool.Bytes(nodeCPUs*gibPerCPU)<<30
		ids[i] = string(rune('a'+i)) + "-node"
	}
	nodeOf := map[string]int{}
	for i, id := range ids {
		nodeOf[id] = i
	}
	ledger := fairshare.NewLedger(cfg.HalfLife)
	shares := fairshare.Shares{Users: map[string]float64{}}
	for _, pr := range team {
		shares.Users[pr.user] = float64(pr.shares)
	}
	var queue []*tjob
	var run []running
	waits := map[*tjob]time.Duration{}
	got := map[string]float64{} // cpu-seconds delivered
	firstFlood := time.Time{}
	next := 0
	var passTimes []time.Duration
	rate := func(j *tjob) fairshare.Rate {
		return fairshare.Rate{CPUs: float64(j.cpus), GiB: float64(j.cpus * gibPerCPU)}
	}
	for now := trace[0].submit; !now.After(end); {
		// Ends, then arrivals, at now.
		run = slices.DeleteFunc(run, func(r running) bool {
			if r.at.Add(r.job.run).After(now) {
				return false
			}
			stop := r.at.Add(r.job.run)
			freeCPU[r.node] += dspool.MilliCPU(r.job.cpus * 1000)
			freeMem[r.node] += r.job.mem()
			ledger.Charge(fairshare.Key{User: r.job.user}, fairshare.Held(rate(r.job), r.at, stop, cfg.HalfLife), stop)
			credit(got, r.job, r.at, stop, firstFlood)
			return true
		})
		for next < len(trace) && !trace[next].submit.After(now) {
			queue = append(queue, &trace[next])
			if firstFlood.IsZero() && trace[next].submit.Hour() >= 9 && heavy(trace[next].user) {
				firstFlood = trace[next].submit
			}
			next++
		}
		if len(queue) > 0 {
			t0 := time.Now()
			placed := pass(now, queue, run, freeCPU, freeMem, ids, ledger, shares, p, cfg)
			passTimes = append(passTimes, time.Since(t0))
			for _, pl := range placed {
				j := pl.job
				n := nodeOf[pl.node]
				freeCPU[n] -= dspool.MilliCPU(j.cpus * 1000)
				freeMem[n] -= j.mem()
				run = append(run, running{job: j, node: n, at: now})
				waits[j] = now.Sub(j.submit)
			}
			if len(placed) > 0 {
				queue = slices.DeleteFunc(queue, func(j *tjob) bool { _, ok := waits[j]; return ok })
			}
		}
		// The next moment anything happens.
		step := now.Add(tick)
		if next < len(trace) && trace[next].submit.Before(step) {
			step = trace[next].submit
		}
		for _, r := range run {
			if e := r.at.Add(r.job.run); e.Before(step) {
				step = e
			}
		}
		now = step
	}
	// What still runs at the end counts up to the end.
	for _, r := range run {
		credit(got, r.job, r.at, end, firstFlood)
	}
	// Jobs still queued at the end have waited at least until then.
	for _, j := range queue {
		waits[j] = end.Sub(j.submit)
	}
	res.finish(got, waits, end.Sub(firstFlood), passTimes)
	res.RunMs = float64(time.Since(began).Milliseconds())
	return res
}

// finish works out the figures from the cpu-seconds each user got over
// span, each job's wait and the passes' times.
func (res *simResult) finish(got map[string]float64, waits map[*tjob]time.Duration, span time.Duration, passTimes []time.Duration) {
	used := 0.0
	for _, v := range got {
		used += v
	}
	res.Utilization = used / (float64(nodeCount*nodeCPUs) * span.Seconds())
	res.Shares, res.MaxDeviation = deviation(got)
	var ll, ls, al, as []float64
	for j, w := range waits {
		s := w.Seconds()
		switch {
		case j.large && !heavy(j.user):
			ll = append(ll, s)
		case !j.large && !heavy(j.user):
			ls = append(ls, s)
		}
		if j.large {
			al = append(al, s)
		} else {
			as = append(as, s)
		}
	}
	res.LightLargeP95, res.LightSmallP95, res.AllLargeP95, res.AllSmallP95 = p95(ll), p95(ls), p95(al), p95(as)
	slices.Sort(passTimes)
	res.Passes = len(passTimes)
	if len(passTimes) > 0 {
		res.PassP50Us = float64(passTimes[len(passTimes)/2].Nanoseconds()) / 1000
		res.PassMaxUs = float64(passTimes[len(passTimes)-1].Nanoseconds()) / 1000
	}
}

type placed struct {
	job  *tjob
	node string
}

// pass is one scheduling pass as the server makes it: decayed usage plus
// what runs, the factors of the users with work, scores, then the plan.
func pass(now time.Time, queue []*tjob, run []running, freeCPU []dspool.MilliCPU, freeMem []dspool.Bytes, ids []string,
	ledger *fairshare.Ledger, shares fairshare.Shares, p policy, cfg fairshare.Config) []placed {
	nodes := make([]scheduler.Node, len(ids))
	for i, id := range ids {
		nodes[i] = scheduler.Node{ID: id, Pool: "batch", CPUs: nodeCPUs * 1000, Memory: dspool.Bytes(nodeCPUs*gibPerCPU) << 30,
			FreeCPUs: freeCPU[i], FreeMem: freeMem[i]}
	}
	for _, r := range run {
		nodes[r.node].Releases = append(nodes[r.node].Releases, scheduler.Release{After: max(r.at.Add(r.job.limit).Sub(now), 0),
			CPUs: dspool.MilliCPU(r.job.cpus * 1000), Memory: r.job.mem()})
	}
	var st fairshare.Standing
	if p.Fair {
		usage := ledger.Usage(now)
		var keys []fairshare.Key
		for _, r := range run {
			k := fairshare.Key{User: r.job.user}
			usage[k] = usage[k].Add(fairshare.Held(fairshare.Rate{CPUs: float64(r.job.cpus), GiB: float64(r.job.cpus * gibPerCPU)}, r.at, now, cfg.HalfLife))
			keys = append(keys, k)
		}
		for _, j := range queue {
			keys = append(keys, fairshare.Key{User: j.user})
		}
		st = fairshare.Factors(keys, usage, shares, cfg.Billing)
	}
	jobs := make([]scheduler.Job, len(queue))
	byID := make(map[int64]*tjob, len(queue))
	for i, j := range queue {
		age := now.Sub(j.submit)
		jobs[i] = scheduler.Job{ID: j.id, Pool: "batch", CPUs: dspool.MilliCPU(j.cpus * 1000), Memory: j.mem(), User: j.user, TimeLimit: j.limit}
		if p.Fair {
			jobs[i].Score = cfg.Score(0, age, st.Users[fairshare.Key{User: j.user}].Factor)
		}
		jobs[i].Reserve = p.Reserve && cfg.Reserves(age)
		byID[j.id] = j
	}
	var out []placed
	for _, pl := range scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, false).Placements {
		out = append(out, placed{job: byID[pl.Job], node: pl.Node})
	}
	return out
}

// credit adds to got the cpu-seconds j held from from to to, from since on.
func credit(got map[string]float64, j *tjob, from, to, since time.Time) {
	if d := to.Sub(later(from, since)); d > 0 {
		got[j.user] += float64(j.cpus) * d.Seconds()
	}
}

func heavy(user string) bool {
	for _, p := range team {
		if p.user == user {
			return p.heavy
		}
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// deviation is each heavy user's part of what the heavy users got against
// their target (their shares among the heavy users'), and the largest
// relative gap.
func deviation(got map[string]float64) ([]userShare, float64) {
	total, shares := 0.0, 0
	for _, p := range team {
		if p.heavy {
			total += got[p.user]
			shares += p.shares
		}
	}
	var out []userShare
	worst := 0.0
	for _, p := range team {
		if !p.heavy {
			continue
		}
		u := userShare{User: p.user, Target: float64(p.shares) / float64(shares)}
		if total > 0 {
			u.Got = got[p.user] / total
		}
		worst = max(worst, abs(u.Got-u.Target)/u.Target)
		out = append(out, u)
	}
	return out, worst
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func p95(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(0.95*float64(len(xs))))]
}

func sortBySubmit(js []tjob) {
	slices.SortStableFunc(js, func(a, b tjob) int { return cmp.Compare(a.submit.UnixNano(), b.submit.UnixNano()) })
}
