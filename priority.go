package dspool

import (
	"fmt"
	"strconv"
	"strings"
)

// PriorityRange is the priorities a team's or a user's jobs may be
// submitted with, Min to Max inclusive.
type PriorityRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// DefaultPriorityRange is what an ordinary user may give when no range
// applies to them: they may lower their own work, as Slurm's nice does,
// and only an admin may raise work above the others.
var DefaultPriorityRange = PriorityRange{Min: -MaxPriority, Max: 0}

func (r PriorityRange) String() string { return fmt.Sprintf("%d..%d", r.Min, r.Max) }

// Contains reports whether p is in r.
func (r PriorityRange) Contains(p int) bool { return p >= r.Min && p <= r.Max }

// Clamp returns the priority of r nearest to p.
func (r PriorityRange) Clamp(p int) int { return min(max(p, r.Min), r.Max) }

// Validate returns an EInvalid error naming field unless r is within the
// priorities a job may have and not empty.
func (r PriorityRange) Validate(field string) error {
	if r.Min < -MaxPriority || r.Max > MaxPriority || r.Min > r.Max {
		return Invalid(field, "%s is not a range of priorities: give MIN..MAX with -%d <= MIN <= MAX <= %d, e.g. -100..100", r, MaxPriority, MaxPriority)
	}
	return nil
}

// ParsePriorityRange parses "MIN..MAX" ("-100..100", "-50..-10"); a single
// number N is N..N. A refusal is an EInvalid error naming field.
func ParsePriorityRange(field, s string) (PriorityRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "..")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return PriorityRange{}, Invalid(field, "%s is not a range of priorities: give MIN..MAX, e.g. -100..100", quote(s))
	}
	r := PriorityRange{Min: a, Max: b}
	if err := r.Validate(field); err != nil {
		return PriorityRange{}, err
	}
	return r, nil
}

// PriorityBounds are the priorities one user may give the jobs they run
// for one team, and the priority such a job gets when none is given.
type PriorityBounds struct {
	Range   PriorityRange
	Default int
	// Whose names where Range comes from, for messages: "user ann and team
	// vision", "team vision", or "" for DefaultPriorityRange.
	Whose string
	// Admin: any priority of a job may be given; Range still bounds the
	// default.
	Admin bool
}

// JobPriorityBounds returns the bounds of the jobs user submits for team
// ("" for none): the intersection of the ranges of the user's and the
// team's limits where set, DefaultPriorityRange when neither is; the
// user's default priority, else the team's, else 0, clamped into that
// range. An EInvalid error says so when the two ranges do not meet.
func JobPriorityBounds(user, team string, userLimits, teamLimits Limits, admin bool) (PriorityBounds, error) {
	b := PriorityBounds{Range: DefaultPriorityRange, Admin: admin}
	var whose []string
	ranges := []struct {
		who string
		r   *PriorityRange
	}{{"user " + user, userLimits.Priority}, {"team " + team, teamLimits.Priority}}
	if team == "" {
		ranges = ranges[:1]
	}
	set := false
	for _, x := range ranges {
		if x.r == nil {
			continue
		}
		if !set {
			b.Range, set = *x.r, true
		} else {
			b.Range = PriorityRange{Min: max(b.Range.Min, x.r.Min), Max: min(b.Range.Max, x.r.Max)}
		}
		whose = append(whose, x.who)
	}
	b.Whose = strings.Join(whose, " and ")
	if b.Range.Min > b.Range.Max && !admin {
		return b, Invalid("priority", "the priority range of user %s (%s) and that of team %s (%s) do not meet, so no job of user %s can run for team %s: ask an admin",
			user, userLimits.Priority, team, teamLimits.Priority, user, team)
	}
	switch {
	case userLimits.DefaultPriority != nil:
		b.Default = *userLimits.DefaultPriority
	case team != "" && teamLimits.DefaultPriority != nil:
		b.Default = *teamLimits.DefaultPriority
	}
	if b.Range.Min <= b.Range.Max {
		b.Default = b.Range.Clamp(b.Default)
	}
	return b, nil
}

// Priority returns the priority of a job asked to run at asked (nil: none
// given): the default when none is given, asked when it is within the
// range (any priority for an admin), else an EInvalid error naming the
// field "priority" that gives the range and whose it is. user and team
// name the submitter and the job's team for that message.
func (b PriorityBounds) Priority(asked *int, user, team string) (int, error) {
	if asked == nil {
		return b.Default, nil
	}
	p := *asked
	if b.Admin || b.Range.Contains(p) {
		return p, nil
	}
	return 0, b.OutOfRange(p, user, team)
}

// OutOfRange is the error of priority p outside b's range for user's work
// for team.
func (b PriorityBounds) OutOfRange(p int, user, team string) error {
	who := "user " + user
	if team != "" {
		who += " in team " + team
	}
	src := "with no range set, only an admin may raise a job above 0"
	if b.Whose != "" {
		src = "the range of " + b.Whose
	}
	return Invalid("priority", "%d is out of range for %s: give %d to %d (%s), or ask an admin", p, who, b.Range.Min, b.Range.Max, src)
}

// PriorityChanger is who asks to change the priority of a queued job, and
// what they may give it.
type PriorityChanger struct {
	Admin bool
	// Maintainer: the caller maintains the job's team, whose range is
	// TeamRange (nil: DefaultPriorityRange).
	Maintainer bool
	TeamRange  *PriorityRange
	// Owner: the caller submitted the job, whose bounds for its team are
	// OwnerBounds.
	Owner       bool
	OwnerBounds PriorityBounds
}

// CheckChange returns nil when c may set the priority of a queued job of
// user for team, now at current, to p: an admin any priority; a
// maintainer of the team one within the team's range; the owner one they
// could submit with, or one lower than current that is not below their
// range (they may lower work that a maintainer raised). Else an EInvalid
// error naming "priority" gives the range.
func (c PriorityChanger) CheckChange(user, team string, current, p int) error {
	if p < -MaxPriority || p > MaxPriority {
		return Invalid("priority", "%d is out of range: give -%d to %d", p, MaxPriority, MaxPriority)
	}
	if c.Admin {
		return nil
	}
	tr, whose := DefaultPriorityRange, "with no range set, only an admin may raise a job above 0"
	if c.TeamRange != nil {
		tr, whose = *c.TeamRange, "the range of team "+team
	}
	if c.Maintainer && tr.Contains(p) {
		return nil
	}
	ob := c.OwnerBounds
	if c.Owner && p >= ob.Range.Min && (p <= ob.Range.Max || p <= current) {
		return nil
	}
	if c.Maintainer {
		return Invalid("priority", "%d is out of range for a maintainer of team %s: give %d to %d (%s), or ask an admin", p, team, tr.Min, tr.Max, whose)
	}
	return ob.OutOfRange(p, user, team)
}
