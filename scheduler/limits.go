package scheduler

import (
	"fmt"

	"github.com/dspool/dspool"
)

// Usage is an amount of cpus, memory and GPUs held.
type Usage struct {
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	GPUs   int
}

// Add returns u plus v.
func (u Usage) Add(v Usage) Usage {
	return Usage{CPUs: u.CPUs + v.CPUs, Memory: u.Memory + v.Memory, GPUs: u.GPUs + v.GPUs}
}

// Quota is one user's or one team's limits and what its running work (job
// attempts, session reservations) holds now.
type Quota struct {
	Limits dspool.Limits
	Used   Usage
}

// Quotas are the limits in force, by user name and by team name. A user or
// team that is not listed has no limit. Limits.Nodes is not read here: it is
// the autoscaler's.
type Quotas struct {
	Users map[string]Quota
	Teams map[string]Quota
	// Arrays caps the tasks of arrays that run at once, by array.
	Arrays map[int64]ArrayCap
}

// ArrayCap is how many tasks of an array may run at once, and how many
// run now.
type ArrayCap struct {
	Max, Running int
}

// Held is a queued job held back by a limit of its team or user, and why:
// "team vision: 8 of 8 gpus in use".
type Held struct {
	Job    int64
	Reason string
}

// Admit walks jobs in Plan's order and lets through each job that fits the
// limits of its team and its user, counting what they hold now plus every
// job let through before it, as though each ran. It returns the others, in
// that order, with their reasons. Nodes play no part: a job let through may
// still find no room.
func Admit(jobs []Job, q Quotas) []Held {
	led := newLedger(q)
	if led == nil {
		return nil
	}
	var held []Held
	for _, i := range queue(jobs) {
		j := &jobs[i]
		if why := led.over(j, true); why != "" {
			held = append(held, Held{Job: j.ID, Reason: why})
			continue
		}
		led.charge(j, true)
	}
	return held
}

// Check returns why work of user on behalf of team ("": none) that holds
// want would take either over a limit, or "" when it fits, and whether the
// limit is the user's own (else the team's). The server uses it for
// sessions, which reserve room as they open.
func (q Quotas) Check(user, team string, want Usage) (why string, userLimit bool) {
	led := newLedger(q)
	if led == nil {
		return "", false
	}
	j := &Job{User: user, Team: team, CPUs: want.CPUs, Memory: want.Memory, GPUs: want.GPUs}
	for i, a := range led.accounts(j) {
		if a == nil {
			continue
		}
		if why := a.over(Usage{CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs}, false); why != "" {
			return why, i == 1
		}
	}
	return "", false
}

// ledger is the working state of limits during one walk of the queue: a
// copy of the quotas touched so far, so the caller's maps stay as they were.
type ledger struct {
	q            Quotas
	users, teams map[string]*account
	// tasks counts, by array, the tasks placed (or let through) in this
	// walk.
	tasks map[int64]int
}

// account is one user's or team's quota during a walk.
type account struct {
	what   string // "team vision", "user alice"
	limits dspool.Limits
	used   Usage // held now, and by jobs placed in this plan
	ahead  Usage // charged to jobs ahead in the queue that Admit let through
}

// newLedger returns nil when q limits nothing, so that a plan without
// limits costs nothing more.
func newLedger(q Quotas) *ledger {
	if len(q.Users) == 0 && len(q.Teams) == 0 && len(q.Arrays) == 0 {
		return nil
	}
	return &ledger{q: q, users: map[string]*account{}, teams: map[string]*account{}, tasks: map[int64]int{}}
}

func (l *ledger) account(kind, name string, quotas map[string]Quota, cache map[string]*account) *account {
	if a, ok := cache[name]; ok {
		return a
	}
	var a *account
	if qu, ok := quotas[name]; ok && name != "" {
		a = &account{what: kind + " " + name, limits: qu.Limits, used: qu.Used}
	}
	cache[name] = a
	return a
}

// accounts returns the accounts j counts against, team first; nil entries
// have no limit.
func (l *ledger) accounts(j *Job) [2]*account {
	return [2]*account{
		l.account("team", j.Team, l.q.Teams, l.teams),
		l.account("user", j.User, l.q.Users, l.users),
	}
}

// over returns why j does not fit its accounts, "" when it does. With
// admit, what jobs ahead were charged counts too.
func (l *ledger) over(j *Job, admit bool) string {
	if c, ok := l.q.Arrays[j.Array]; ok && j.Array != 0 && c.Max > 0 && c.Running+l.tasks[j.Array] >= c.Max {
		return fmt.Sprintf("array %d: %d of %d tasks running at once (--array ...%%%d)", j.Array, c.Running+l.tasks[j.Array], c.Max, c.Max)
	}
	want := Usage{CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs}
	for _, a := range l.accounts(j) {
		if a == nil {
			continue
		}
		if why := a.over(want, admit); why != "" {
			return why
		}
	}
	return ""
}

// charge counts j against its accounts: as in use (placed), or as ahead
// (let through by Admit).
func (l *ledger) charge(j *Job, admit bool) {
	if j.Array != 0 {
		l.tasks[j.Array]++
	}
	want := Usage{CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs}
	for _, a := range l.accounts(j) {
		switch {
		case a == nil:
		case admit:
			a.ahead = a.ahead.Add(want)
		default:
			a.used = a.used.Add(want)
		}
	}
}

// over checks want against a's limits, GPUs first, then cpus, then memory,
// and says why the first one it passes does not fit.
func (a *account) over(want Usage, admit bool) string {
	ahead := Usage{}
	if admit {
		ahead = a.ahead
	}
	lim := a.limits
	if lim.GPUs != nil && int64(a.used.GPUs+ahead.GPUs+want.GPUs) > int64(*lim.GPUs) {
		return a.explain("gpu", int64(*lim.GPUs), int64(a.used.GPUs), int64(ahead.GPUs), int64(want.GPUs), func(n int64) string { return fmt.Sprint(n) })
	}
	if lim.CPUs != nil && a.used.CPUs+ahead.CPUs+want.CPUs > *lim.CPUs {
		return a.explain("cpu", int64(*lim.CPUs), int64(a.used.CPUs), int64(ahead.CPUs), int64(want.CPUs), func(n int64) string { return dspool.MilliCPU(n).String() })
	}
	if lim.Memory != nil && a.used.Memory+ahead.Memory+want.Memory > *lim.Memory {
		return a.explain("memory", int64(*lim.Memory), int64(a.used.Memory), int64(ahead.Memory), int64(want.Memory), func(n int64) string { return dspool.Bytes(n).String() })
	}
	return ""
}

// explain says why want does not fit under limit of unit: "team vision: 8
// of 8 gpus in use", "team vision: 6 of 8 gpus in use, and it needs 4",
// "user alice: 2 of 8 gpus in use and 4 more wanted by jobs ahead of it,
// and it needs 4", "team vision may hold 8 gpus at once, and it needs 16",
// and, once a limit was lowered below what is in use, "user alice: 2 gpus
// in use, and the limit is 1".
func (a *account) explain(unit string, limit, used, ahead, want int64, f func(int64) string) string {
	// amount says n of the unit: "2 gpus", "1 cpu", "4GiB of memory".
	amount := func(n int64) string {
		if unit == "memory" {
			return f(n) + " of memory"
		}
		return dspool.Plural(f(n), unit)
	}
	if want > limit {
		return fmt.Sprintf("%s may hold %s at once, and it needs %s", a.what, amount(limit), f(want))
	}
	if used > limit {
		return fmt.Sprintf("%s: %s in use, and the limit is %s", a.what, amount(used), f(limit))
	}
	s := fmt.Sprintf("%s: %s of %s in use", a.what, f(used), amount(limit))
	if unit == "memory" {
		s = fmt.Sprintf("%s: %s of %s memory in use", a.what, f(used), f(limit))
	}
	if ahead > 0 {
		s += fmt.Sprintf(" and %s more wanted by jobs ahead of it", f(ahead))
	}
	if used+ahead < limit {
		s += ", and it needs " + f(want)
	}
	return s
}
