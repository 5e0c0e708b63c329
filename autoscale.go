package dspool

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Autoscale is a pool's scaling policy: the bounds, the rules in the style of
// a scale set, schedules that raise the floor, and how idle nodes go.
//
// Demand-aware scale-out needs no rule: work that waits and fits no node
// (queued jobs, sessions waiting to log in) adds the nodes it needs at once.
// Rules add or remove nodes on measured load as well.
type Autoscale struct {
	Min int `json:"min" yaml:"min"`
	Max int `json:"max" yaml:"max"`
	// IdleTimeout is how long a node has had no attempt and no session
	// before it is removed (down to Min). Default 10m.
	IdleTimeout Duration `json:"idle_timeout,omitempty" yaml:"idle_timeout"`
	// WarmSpares is how many idle ready nodes are kept beyond what waits, so
	// that the next login or job starts at once (within Max).
	WarmSpares int `json:"warm_spares,omitempty" yaml:"warm_spares"`
	// ScaleInPolicy orders idle nodes for removal: lru (idle the longest;
	// default), oldest (created first) or newest.
	ScaleInPolicy string `json:"scale_in_policy,omitempty" yaml:"scale_in_policy"`
	// BootTimeout is how long a new node may take to become ready before it
	// is removed as failed. Default 10m.
	BootTimeout Duration `json:"boot_timeout,omitempty" yaml:"boot_timeout"`
	// WaitTimeout is how long a login, a notebook start or `job submit
	// --wait` waits for a node of this pool before it gives up. Default 10m.
	WaitTimeout Duration        `json:"wait_timeout,omitempty" yaml:"wait_timeout"`
	Rules       []ScaleRule     `json:"rules,omitempty" yaml:"rules"`
	Schedules   []ScaleSchedule `json:"schedules,omitempty" yaml:"schedules"`
}

// Scale-in policies.
const (
	ScaleInLRU    = "lru"
	ScaleInOldest = "oldest"
	ScaleInNewest = "newest"
)

// Metrics a scale rule may read. The percentages are of the ready nodes of
// the pool taken together; cpu_percent and memory_percent are measured use
// (load average and memory in use), gpu_percent the share of GPUs held by
// attempts.
const (
	MetricCPU             = "cpu_percent"
	MetricMemory          = "memory_percent"
	MetricGPU             = "gpu_percent"
	MetricQueuedJobs      = "queued_jobs"
	MetricPendingSessions = "pending_sessions"
	MetricSessionsPerNode = "sessions_per_node"
)

var metrics = []string{MetricCPU, MetricMemory, MetricGPU, MetricQueuedJobs, MetricPendingSessions, MetricSessionsPerNode}

// Rule actions.
const (
	ScaleOut = "out"
	ScaleIn  = "in"
)

// ScaleRule adds (action out) or removes (action in) Step nodes when the
// metric's mean over Window compares to Threshold by Operator, at most once
// per Cooldown.
type ScaleRule struct {
	Metric    string   `json:"metric" yaml:"metric"`
	Operator  string   `json:"operator" yaml:"operator"`
	Threshold float64  `json:"threshold" yaml:"threshold"`
	Window    Duration `json:"window,omitempty" yaml:"window"`
	Action    string   `json:"action" yaml:"action"`
	Step      int      `json:"step,omitempty" yaml:"step"`
	Cooldown  Duration `json:"cooldown,omitempty" yaml:"cooldown"`
}

// Holds reports whether v compares to the threshold as the rule says.
func (r *ScaleRule) Holds(v float64) bool {
	switch r.Operator {
	case ">":
		return v > r.Threshold
	case ">=":
		return v >= r.Threshold
	case "<":
		return v < r.Threshold
	case "<=":
		return v <= r.Threshold
	}
	return false
}

// String is the rule as a person reads it: "cpu_percent > 75 over 5m".
func (r *ScaleRule) String() string {
	return fmt.Sprintf("%s %s %s over %s", r.Metric, r.Operator, strconv.FormatFloat(r.Threshold, 'f', -1, 64), time.Duration(r.Window))
}

// ScaleSchedule raises the pool's floor (and may lower its ceiling) on the
// given days between From and To, local time in Timezone. A window whose To
// is not after From runs past midnight into the next day.
type ScaleSchedule struct {
	Days     []string `json:"days" yaml:"days"`
	From     string   `json:"from" yaml:"from"`
	To       string   `json:"to" yaml:"to"`
	Timezone string   `json:"timezone,omitempty" yaml:"timezone"`
	Min      int      `json:"min" yaml:"min"`
	// Max, when set, lowers the pool's ceiling during the window.
	Max *int `json:"max,omitempty" yaml:"max"`
}

// Autoscale defaults and bounds.
const (
	DefaultIdleTimeout = 10 * time.Minute
	DefaultBootTimeout = 10 * time.Minute
	DefaultWaitTimeout = 10 * time.Minute
	MaxScaleRules      = 32
	MaxScaleSchedules  = 32
	DefaultRuleWindow  = 5 * time.Minute
	DefaultCooldown    = 5 * time.Minute
)

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func (a *Autoscale) normalize(prefix string, p *Pool) error {
	f := func(name string) string { return prefix + "autoscale." + name }
	if p.Provider.Name == ProviderStatic {
		return Invalid(prefix+"autoscale", "pool %s is static: its nodes are machines you run, and dspool cannot add or remove them; remove autoscale, or use provider local", p.Name)
	}
	if p.Count != 0 {
		return Invalid(prefix+"count", "pool %s has autoscale, which sets its size: remove count (use autoscale.min for a floor)", p.Name)
	}
	if a.Min < 0 || a.Min > MaxPoolCount {
		return Invalid(f("min"), "must be between 0 and %d", MaxPoolCount)
	}
	if a.Max < 1 || a.Max > MaxPoolCount {
		return Invalid(f("max"), "must be between 1 and %d: it bounds what the pool may grow to", MaxPoolCount)
	}
	if a.Min > a.Max {
		return Invalid(f("min"), "is %d, above max %d: lower min, or raise max", a.Min, a.Max)
	}
	if a.WarmSpares < 0 || a.WarmSpares > a.Max {
		return Invalid(f("warm_spares"), "must be between 0 and max (%d)", a.Max)
	}
	switch a.ScaleInPolicy {
	case "":
		a.ScaleInPolicy = ScaleInLRU
	case ScaleInLRU, ScaleInOldest, ScaleInNewest:
	default:
		return Invalid(f("scale_in_policy"), "%s is not a policy: use lru, oldest or newest", quote(a.ScaleInPolicy))
	}
	for _, d := range []struct {
		name string
		v    *Duration
		def  time.Duration
		min  time.Duration
	}{
		{"idle_timeout", &a.IdleTimeout, DefaultIdleTimeout, time.Second},
		{"boot_timeout", &a.BootTimeout, DefaultBootTimeout, time.Second},
		{"wait_timeout", &a.WaitTimeout, DefaultWaitTimeout, time.Second},
	} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
		if time.Duration(*d.v) < d.min || time.Duration(*d.v) > 7*24*time.Hour {
			return Invalid(f(d.name), "must be between 1s and 168h")
		}
	}
	if len(a.Rules) > MaxScaleRules {
		return Invalid(f("rules"), "has %d rules: at most %d", len(a.Rules), MaxScaleRules)
	}
	for i := range a.Rules {
		if err := a.Rules[i].normalize(fmt.Sprintf("%sautoscale.rules[%d].", prefix, i), a); err != nil {
			return err
		}
	}
	if len(a.Schedules) > MaxScaleSchedules {
		return Invalid(f("schedules"), "has %d schedules: at most %d", len(a.Schedules), MaxScaleSchedules)
	}
	for i := range a.Schedules {
		if err := a.Schedules[i].normalize(fmt.Sprintf("%sautoscale.schedules[%d].", prefix, i), a); err != nil {
			return err
		}
	}
	return nil
}

func (r *ScaleRule) normalize(prefix string, a *Autoscale) error {
	known := false
	for _, m := range metrics {
		known = known || r.Metric == m
	}
	if !known {
		return Invalid(prefix+"metric", "%s is not a metric: use one of %s", quote(r.Metric), strings.Join(metrics, ", "))
	}
	switch r.Operator {
	case ">", ">=", "<", "<=":
	default:
		return Invalid(prefix+"operator", "%s is not an operator: use >, >=, < or <=", quote(r.Operator))
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) || r.Threshold < 0 || r.Threshold > 1e6 {
		return Invalid(prefix+"threshold", "must be a number between 0 and 1000000")
	}
	if strings.HasSuffix(r.Metric, "_percent") && r.Threshold > 100 {
		return Invalid(prefix+"threshold", "%s is a percentage: give 0 to 100", r.Metric)
	}
	switch r.Action {
	case ScaleOut, ScaleIn:
	default:
		return Invalid(prefix+"action", "%s is not an action: use out (add nodes) or in (remove idle nodes)", quote(r.Action))
	}
	if r.Window == 0 {
		r.Window = Duration(DefaultRuleWindow)
	}
	if time.Duration(r.Window) < time.Second || time.Duration(r.Window) > 24*time.Hour {
		return Invalid(prefix+"window", "must be between 1s and 24h")
	}
	if r.Step == 0 {
		r.Step = 1
	}
	if r.Step < 0 || r.Step > a.Max {
		return Invalid(prefix+"step", "must be between 1 and max (%d)", a.Max)
	}
	if r.Cooldown == 0 {
		r.Cooldown = Duration(DefaultCooldown)
	}
	if time.Duration(r.Cooldown) < time.Second || time.Duration(r.Cooldown) > 24*time.Hour {
		return Invalid(prefix+"cooldown", "must be between 1s and 24h")
	}
	return nil
}

func (s *ScaleSchedule) normalize(prefix string, a *Autoscale) error {
	if len(s.Days) == 0 {
		return Invalid(prefix+"days", "is empty: list days (mon, tue, ...) or give weekdays, weekends or daily")
	}
	var days []string
	for i, d := range s.Days {
		switch d = strings.ToLower(d); d {
		case "weekdays":
			days = append(days, "mon", "tue", "wed", "thu", "fri")
		case "weekends":
			days = append(days, "sat", "sun")
		case "daily", "everyday":
			days = append(days, "mon", "tue", "wed", "thu", "fri", "sat", "sun")
		default:
			if _, ok := weekdays[d]; !ok {
				return Invalid(fmt.Sprintf("%sdays[%d]", prefix, i), "%s is not a day: use mon, tue, wed, thu, fri, sat, sun, weekdays, weekends or daily", quote(d))
			}
			days = append(days, d)
		}
	}
	s.Days = days
	from, err := clock(s.From)
	if err != nil {
		return Invalid(prefix+"from", "%s", err)
	}
	to, err := clock(s.To)
	if err != nil {
		return Invalid(prefix+"to", "%s", err)
	}
	if from == to || from == 24*60 && to == 0 {
		return Invalid(prefix+"to", "is the same time as from: the window would be empty (for all day, give from: \"00:00\" and to: \"24:00\")")
	}
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	if _, err := location(s.Timezone); err != nil || strings.Contains(s.Timezone, "..") {
		return Invalid(prefix+"timezone", "%s is not a time zone: give an IANA name such as Europe/Lisbon or UTC", quote(s.Timezone))
	}
	if s.Min < 0 || s.Min > a.Max {
		return Invalid(prefix+"min", "must be between 0 and the pool's max (%d)", a.Max)
	}
	if s.Max != nil && (*s.Max < s.Min || *s.Max > a.Max) {
		return Invalid(prefix+"max", "must be between this schedule's min (%d) and the pool's max (%d)", s.Min, a.Max)
	}
	return nil
}

// locations caches loaded time zones: loading one reads the zone database.
var locations sync.Map // name -> *time.Location

func location(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}

// clock parses "HH:MM" (00:00 to 24:00) into minutes after midnight.
func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("%s is not a time of day: write HH:MM, e.g. 08:00 or 19:30", quote(s))
	}
	return hh*60 + mm, nil
}

// Active reports whether the schedule's window contains t. The schedule
// must have been normalized.
func (s *ScaleSchedule) Active(t time.Time) bool {
	loc, err := location(s.Timezone)
	if err != nil {
		return false
	}
	return s.ActiveIn(t, loc)
}

// ActiveIn is Active with the schedule's location already loaded.
func (s *ScaleSchedule) ActiveIn(t time.Time, loc *time.Location) bool {
	from, err1 := clock(s.From)
	to, err2 := clock(s.To)
	if err1 != nil || err2 != nil {
		return false
	}
	l := t.In(loc)
	minute := l.Hour()*60 + l.Minute()
	on := func(d time.Weekday) bool {
		for _, x := range s.Days {
			if weekdays[x] == d {
				return true
			}
		}
		return false
	}
	if from < to {
		return on(l.Weekday()) && minute >= from && minute < to
	}
	// Past midnight: today from From, or yesterday's window running on.
	yesterday := (l.Weekday() + 6) % 7
	return on(l.Weekday()) && minute >= from || on(yesterday) && minute < to
}
