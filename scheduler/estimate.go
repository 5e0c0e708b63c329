package scheduler

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Start is when a queued job is expected to start, from the moment of the
// plan; Known is false when no node of its pool ever has room for it by
// the time limits (work without one holds what it needs).
type Start struct {
	At    time.Duration
	Known bool
}

// forever is the end of a hold without a time limit.
const forever = time.Duration(math.MaxInt64)

// step is what a node has free from at until the next step.
type step struct {
	at   time.Duration
	free shape
}

// Estimate says when each of the first jobs of each pool's queue (first
// of them), in queue order, is expected to start, as Slurm's backfill
// plans: each job in turn takes the earliest time a node of its pool, open
// to its user, has room for it over its whole time limit (to the end of
// time without one), given what is free now, what running work gives back
// at its time limits and what the jobs before it took; it holds that room.
// Limits of teams and users are not read. It does not modify its
// arguments.
func Estimate(nodes []Node, jobs []Job, first int) map[int64]Start {
	steps := make([][]step, len(nodes))
	var rel []Release
	for i := range nodes {
		n := &nodes[i]
		free := shape{cpus: n.FreeCPUs, mem: n.FreeMem, gpus: len(n.FreeGPUs)}
		s := []step{{at: 0, free: free}}
		rel = append(rel[:0], n.Releases...)
		slices.SortFunc(rel, func(a, b Release) int { return cmp.Compare(a.After, b.After) })
		for _, r := range rel {
			free = shape{cpus: free.cpus + r.CPUs, mem: free.mem + r.Memory, gpus: free.gpus + r.GPUs}
			if at := max(r.After, 0); at == s[len(s)-1].at {
				s[len(s)-1].free = free
			} else {
				s = append(s, step{at: at, free: free})
			}
		}
		steps[i] = s
	}
	out := map[int64]Start{}
	seen := map[string]int{}
	for _, k := range queue(jobs) {
		j := &jobs[k]
		if seen[j.Pool] >= first || j.CPUs < 0 || j.Memory < 0 || j.GPUs < 0 {
			continue
		}
		seen[j.Pool]++
		want := shape{cpus: j.CPUs, mem: j.Memory, gpus: j.GPUs}
		dur := forever
		if j.TimeLimit > 0 {
			dur = j.TimeLimit
		}
		best, at := -1, forever
		for i := range nodes {
			if nodes[i].Pool != j.Pool || nodes[i].Closed[j.User] {
				continue
			}
			if t, ok := earliest(steps[i], want, dur, at); ok {
				best, at = i, t
			}
		}
		if best < 0 {
			out[j.ID] = Start{}
			continue
		}
		out[j.ID] = Start{At: at, Known: true}
		steps[best] = hold(steps[best], at, dur, want)
	}
	return out
}

// earliest returns the first step boundary before bound from which s has
// want free for dur.
func earliest(s []step, want shape, dur, bound time.Duration) (time.Duration, bool) {
	for i := range s {
		t := s[i].at
		if t >= bound {
			break
		}
		end := until(t, dur)
		ok := true
		for k := i; k < len(s) && s[k].at < end; k++ {
			if !s[k].free.covers(want) {
				ok = false
				break
			}
		}
		if ok {
			return t, true
		}
	}
	return 0, false
}

// hold takes want from s over [at, at+dur).
func hold(s []step, at, dur time.Duration, want shape) []step {
	end := until(at, dur)
	s = split(s, at)
	if end != forever {
		s = split(s, end)
	}
	for k := range s {
		if s[k].at >= at && s[k].at < end {
			s[k].free = s[k].free.minus(want)
		}
	}
	return s
}

// split makes sure a step starts at t.
func split(s []step, t time.Duration) []step {
	i, found := slices.BinarySearchFunc(s, t, func(x step, t time.Duration) int { return cmp.Compare(x.at, t) })
	if found {
		return s
	}
	return slices.Insert(s, i, step{at: t, free: s[i-1].free})
}

// until is at+dur, forever when that overflows.
func until(at, dur time.Duration) time.Duration {
	if dur == forever || at > forever-dur {
		return forever
	}
	return at + dur
}
