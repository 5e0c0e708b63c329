package dspool

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Team is a group of users. Pools are granted to teams (Pool.Teams), and a
// team's limits cap what its work holds at once. A user may belong to
// several teams.
type Team struct {
	Name      string       `json:"name"`
	Members   []TeamMember `json:"members"`
	Limits    Limits       `json:"limits"`
	CreatedAt time.Time    `json:"created_at"`
}

// TeamMember is one user's membership of a team. A maintainer adds and
// removes the team's members; creating and deleting teams, their limits and
// which pools they may use stay with admins.
type TeamMember struct {
	User       string `json:"user"`
	Maintainer bool   `json:"maintainer,omitempty"`
}

// Member returns user's membership of t, or nil when user is not in t.
func (t *Team) Member(user string) *TeamMember {
	for i := range t.Members {
		if t.Members[i].User == user {
			return &t.Members[i]
		}
	}
	return nil
}

// Limits cap what the running work of one team or one user holds at once:
// the cpus, memory and GPUs of its running jobs and of its sessions'
// reservations, and how many nodes autoscaling adds for its waiting work. A
// nil field is no limit; zero is a limit of nothing. They also bound the
// priorities of its jobs (Priority, see JobPriorityBounds) and give the
// priority of a job submitted without one (DefaultPriority).
type Limits struct {
	CPUs            *MilliCPU      `json:"cpus,omitempty"`
	Memory          *Bytes         `json:"memory,omitempty"`
	GPUs            *int           `json:"gpus,omitempty"`
	Nodes           *int           `json:"nodes,omitempty"`
	Priority        *PriorityRange `json:"priority,omitempty"`
	DefaultPriority *int           `json:"default_priority,omitempty"`
	// Shares is the raw fair share of a team among the teams with work,
	// or of a user among the team's members with work (none: 1); a user
	// who works for no team competes with the teams on their own shares.
	Shares *int `json:"shares,omitempty"`
}

// Bounds of a limit.
const (
	MaxLimitGPUs = 1 << 20
	MaxShares    = 1_000_000
	// MaxPoolTeams bounds the teams one pool is granted to.
	MaxPoolTeams = 256
)

// None reports whether l limits nothing.
func (l Limits) None() bool {
	return l.CPUs == nil && l.Memory == nil && l.GPUs == nil && l.Nodes == nil && l.Priority == nil && l.DefaultPriority == nil && l.Shares == nil
}

// Validate returns an EInvalid error naming the first field out of range.
func (l Limits) Validate() error {
	if l.CPUs != nil && (*l.CPUs < 0 || *l.CPUs > MaxCPUs*1000) {
		return Invalid("cpus", "%s is out of range: give 0 to %d cpus", *l.CPUs, MaxCPUs)
	}
	if l.Memory != nil && (*l.Memory < 0 || *l.Memory > MaxBytes) {
		return Invalid("memory", "%d bytes is out of range: give a size up to 1EiB with its unit, e.g. 512GiB", *l.Memory)
	}
	if l.GPUs != nil && (*l.GPUs < 0 || *l.GPUs > MaxLimitGPUs) {
		return Invalid("gpus", "%d is out of range: give 0 to %d gpus", *l.GPUs, MaxLimitGPUs)
	}
	if l.Nodes != nil && (*l.Nodes < 0 || *l.Nodes > MaxPoolCount) {
		return Invalid("nodes", "%d is out of range: give 0 to %d nodes", *l.Nodes, MaxPoolCount)
	}
	if l.Shares != nil && (*l.Shares < 0 || *l.Shares > MaxShares) {
		return Invalid("shares", "%d is out of range: give 0 to %d shares", *l.Shares, MaxShares)
	}
	if l.Priority != nil {
		if err := l.Priority.Validate("priority"); err != nil {
			return err
		}
	}
	if d := l.DefaultPriority; d != nil {
		if *d < -MaxPriority || *d > MaxPriority {
			return Invalid("default_priority", "%d is out of range: give -%d to %d", *d, MaxPriority, MaxPriority)
		}
		if l.Priority != nil && !l.Priority.Contains(*d) {
			return Invalid("default_priority", "%d is outside the priority range %s: give a default within it", *d, *l.Priority)
		}
	}
	return nil
}

// String lists the limits set, "64 cpus, 512GiB memory, 8 gpus, 10 nodes",
// or says "none".
func (l Limits) String() string {
	var parts []string
	if l.CPUs != nil {
		parts = append(parts, Plural(*l.CPUs, "cpu"))
	}
	if l.Memory != nil {
		parts = append(parts, fmt.Sprintf("%s memory", *l.Memory))
	}
	if l.GPUs != nil {
		parts = append(parts, Plural(*l.GPUs, "gpu"))
	}
	if l.Nodes != nil {
		parts = append(parts, Plural(*l.Nodes, "node"))
	}
	if l.Priority != nil {
		parts = append(parts, "priority "+l.Priority.String())
	}
	if l.DefaultPriority != nil {
		parts = append(parts, fmt.Sprintf("default priority %d", *l.DefaultPriority))
	}
	if l.Shares != nil {
		parts = append(parts, Plural(*l.Shares, "share"))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Fits returns an EInvalid error naming the field when work of the given
// size can never run under l, held by whom (e.g. "team vision"), or nil.
func (l Limits) Fits(whom string, cpus MilliCPU, mem Bytes, gpus int) error {
	const hint = "ask for less, or ask an admin to raise the limit"
	switch {
	case l.GPUs != nil && gpus > *l.GPUs:
		return Invalid("gpus", "this job can never run: it asks for %s and %s may hold %d at once; %s", Plural(gpus, "gpu"), whom, *l.GPUs, hint)
	case l.CPUs != nil && cpus > *l.CPUs:
		return Invalid("cpus", "this job can never run: it asks for %s and %s may hold %s at once; %s", Plural(cpus, "cpu"), whom, *l.CPUs, hint)
	case l.Memory != nil && mem > *l.Memory:
		return Invalid("memory", "this job can never run: it asks for %s of memory and %s may hold %s at once; %s", mem, whom, *l.Memory, hint)
	}
	return nil
}

// Audited actions on teams and limits.
const (
	AuditTeamCreate       = "team.create"
	AuditTeamDelete       = "team.delete"
	AuditTeamMemberAdd    = "team.member_add"
	AuditTeamMemberRemove = "team.member_remove"
	AuditTeamLimits       = "team.limits"
	AuditUserLimits       = "user.limits"
	// AuditJobPriority: a queued job's priority changed after its
	// submission.
	AuditJobPriority = "job.priority"
)

// Open reports whether every user may use p: it is granted to no team.
func (p *Pool) Open() bool { return len(p.Teams) == 0 }

// Granted returns the teams among memberOf that may use p, in p's order:
// all of memberOf when p is open to every user.
func (p *Pool) Granted(memberOf []string) []string {
	if p.Open() {
		return slices.Clone(memberOf)
	}
	var out []string
	for _, t := range p.Teams {
		if slices.Contains(memberOf, t) {
			out = append(out, t)
		}
	}
	return out
}

// CheckGrant returns an EForbidden error that names the teams p is for
// when a user in the teams memberOf may not use p. Admins may use every
// pool.
func (p *Pool) CheckGrant(memberOf []string, admin bool) error {
	if admin || p.Open() || len(p.Granted(memberOf)) > 0 {
		return nil
	}
	return Errorf(EForbidden, "pool %s is for %s, and you are in none of them: ask an admin, or a maintainer of one of them, to add you (`dspool team show %s`)",
		p.Name, teamList(p.Teams), slices.Min(p.Teams))
}

// TeamFor returns the team a job of a user in the teams memberOf runs on
// behalf of in pool p: asked when it is given (the user must be in it, and
// it must be granted p), else the user's one team that may use p, or none
// when the user is in no team and p is open. A user in several teams that
// may use p must ask for one. Admins may use every pool and name any team;
// that the team exists is the caller's to check.
func TeamFor(p *Pool, memberOf []string, asked string, admin bool) (string, error) {
	if asked != "" {
		if !admin && !slices.Contains(memberOf, asked) {
			mine := "you are in no team"
			if len(memberOf) > 0 {
				mine = "you are in " + teamList(memberOf)
			}
			return "", Errorf(EForbidden, "you are not a member of team %s (%s): submit for one of your teams, or ask a maintainer of %s to add you", asked, mine, asked)
		}
		if !admin && !p.Open() && !slices.Contains(p.Teams, asked) {
			return "", Errorf(EForbidden, "pool %s is for %s, not team %s: submit to a pool that team %s may use (`dspool pool list`)", p.Name, teamList(p.Teams), asked, asked)
		}
		return asked, nil
	}
	if err := p.CheckGrant(memberOf, admin); err != nil {
		return "", err
	}
	switch g := p.Granted(memberOf); len(g) {
	case 0:
		return "", nil
	case 1:
		return g[0], nil
	default:
		// Even on a pool for everyone: a job of no team would escape the
		// limits of every team its user is in.
		slices.Sort(g)
		if p.Open() {
			return "", Invalid("team", "you are in %s, and pool %s is for everyone: say with --team which of them this job is for, e.g. --team %s (that team's limits apply to it)", teamList(g), p.Name, g[0])
		}
		return "", Invalid("team", "you are in %s, and each may use pool %s: say with --team which of them this job is for, e.g. --team %s (that team's limits apply to it)", teamList(g), p.Name, g[0])
	}
}

// teamList names teams for a message, in the order of their names: "team
// vision", "teams nlp and vision", "teams a, b and c".
func teamList(teams []string) string {
	teams = slices.Sorted(slices.Values(teams))
	switch len(teams) {
	case 0:
		return "no team"
	case 1:
		return "team " + teams[0]
	}
	return "teams " + strings.Join(teams[:len(teams)-1], ", ") + " and " + teams[len(teams)-1]
}

// normalizeTeams validates the teams a pool is granted to.
func (p *Pool) normalizeTeams(prefix string) error {
	if len(p.Teams) > MaxPoolTeams {
		return Invalid(prefix+"teams", "has %d teams: at most %d", len(p.Teams), MaxPoolTeams)
	}
	for i, t := range p.Teams {
		field := fmt.Sprintf("%steams[%d]", prefix, i)
		if err := ValidateName(field, t); err != nil {
			return err
		}
		if slices.Contains(p.Teams[:i], t) {
			return Invalid(field, "team %s is listed twice", t)
		}
	}
	return nil
}
