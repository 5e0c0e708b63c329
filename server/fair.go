package server

import (
	"context"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/fairshare"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/store"
)

// endedLag is how far back each pass looks again for attempts that ended:
// an attempt's end is stamped before its transaction commits, so one may
// appear after a later one was read. Those already charged are skipped.
const endedLag = 2 * time.Minute

// fairState is the decayed usage fair share orders the queue by, charged
// as attempts end, so a pass reads only what ended since the last.
type fairState struct {
	mu     sync.Mutex
	ledger *fairshare.Ledger // nil until the first pass loads it
	since  time.Time         // attempts that ended up to here are charged
	seen   map[[2]int64]time.Time
}

// standing is fair share at one moment: every account's decayed usage
// (running work included) and the factors of those with work.
type standing struct {
	now   time.Time
	cfg   fairshare.Config
	usage map[fairshare.Key]fairshare.Usage
	fairshare.Standing
}

func rate(cpus dspool.MilliCPU, mem dspool.Bytes, gpus int) fairshare.Rate {
	return fairshare.Rate{CPUs: float64(cpus) / 1000, GPUs: float64(gpus), GiB: float64(mem) / (1 << 30)}
}

// standing charges the attempts that ended since the last call and works
// out the standing of the accounts with work in active. The first call
// reads the attempts of the last ten half-lives (what still counts more
// than a thousandth).
func (s *Server) standing(ctx context.Context, dir *teamDir, active []store.ActiveJob, now time.Time) (*standing, error) {
	cfg := s.cfg.FairShare
	f := &s.fair
	f.mu.Lock()
	defer f.mu.Unlock()
	from := f.since.Add(-endedLag)
	if f.ledger == nil {
		f.ledger, f.seen, from = fairshare.NewLedger(cfg.HalfLife), map[[2]int64]time.Time{}, now.Add(-10*cfg.HalfLife)
	}
	ended, err := s.db.AttemptsEnded(ctx, from)
	if err != nil {
		return nil, err
	}
	for _, a := range ended {
		key := [2]int64{a.Job, int64(a.Number)}
		if _, done := f.seen[key]; done {
			continue
		}
		f.seen[key] = a.FinishedAt
		f.ledger.Charge(fairshare.Key{Team: a.Team, User: a.User}, fairshare.Held(rate(a.CPUs, a.Memory, a.GPUs), a.StartedAt, a.FinishedAt, cfg.HalfLife), a.FinishedAt)
		f.since = later(f.since, a.FinishedAt)
	}
	for k, at := range f.seen {
		if at.Before(f.since.Add(-endedLag)) {
			delete(f.seen, k)
		}
	}
	// A millionth of a cpu-second is nobody's usage any more: a second
	// of a cpu gets there after 20 half-lives.
	f.ledger.Forget(now, cfg.Billing, 1e-6)
	st := &standing{now: now, cfg: cfg, usage: f.ledger.Usage(now)}
	var keys []fairshare.Key
	for _, j := range active {
		k := fairshare.Key{Team: j.Team, User: j.User}
		keys = append(keys, k)
		if j.State == dspool.JobRunning && j.StartedAt != nil {
			st.usage[k] = st.usage[k].Add(fairshare.Held(rate(j.CPUs, j.Memory, j.GPUs), *j.StartedAt, now, cfg.HalfLife))
		}
	}
	st.Standing = fairshare.Factors(keys, st.usage, dir.shares(), cfg.Billing)
	return st, nil
}

// shares are the raw shares set in teams' and users' limits.
func (d *teamDir) shares() fairshare.Shares {
	sh := fairshare.Shares{Teams: map[string]float64{}, Users: map[string]float64{}}
	for name, t := range d.teams {
		if t.Limits.Shares != nil {
			sh.Teams[name] = float64(*t.Limits.Shares)
		}
	}
	for name, l := range d.users {
		if l.Shares != nil {
			sh.Users[name] = float64(*l.Shares)
		}
	}
	return sh
}

// queued returns the queued jobs of active as the scheduler takes them,
// scored by st. A job's time limit counts with the kill grace that may
// follow it.
func (s *Server) queued(active []store.ActiveJob, st *standing) []scheduler.Job {
	var out []scheduler.Job
	for _, j := range active {
		if j.State != dspool.JobQueued {
			continue
		}
		sj := scheduler.Job{ID: j.ID, Pool: j.Pool, Priority: j.Priority, CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs, Array: j.Array,
			User: j.User, Team: j.Team, Score: s.score(j, st), Reserve: st.cfg.Reserves(st.now.Sub(j.SubmittedAt)), GPUWant: j.GPUWant,
			Preemptible: j.Preemptible}
		if j.TimeLimit > 0 {
			sj.TimeLimit = j.TimeLimit + s.cfg.KillGrace
		}
		out = append(out, sj)
	}
	return out
}

// score is job j's place in the queue by st: its priority, its age since
// submission (which an eviction does not reset) and its fair share. Running
// preemptible jobs are scored so too, to choose which to evict.
func (s *Server) score(j store.ActiveJob, st *standing) float64 {
	return st.cfg.Score(j.Priority, st.now.Sub(j.SubmittedAt), st.Users[fairshare.Key{Team: j.Team, User: j.User}].Factor)
}

// release returns what running job j gives back at its time limit (and
// the kill grace after it), from now, and whether it has a time limit.
func (s *Server) release(j store.ActiveJob, now time.Time) (scheduler.Release, bool) {
	if j.TimeLimit <= 0 {
		return scheduler.Release{}, false
	}
	start := now
	if j.StartedAt != nil {
		start = *j.StartedAt
	}
	return scheduler.Release{After: max(start.Add(j.TimeLimit+s.cfg.KillGrace).Sub(now), 0), CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs}, true
}
