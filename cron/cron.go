// Package cron reads the cron expressions of recurring jobs (dspool
// schedule create --cron) with github.com/netresearch/go-cron, and says
// which slot of a schedule is due at a time.
//
// It uses only the library's parser and its schedules' Next and Prev: the
// control plane owns the loop that fires schedules and the store that
// remembers which slot fired. Nothing here does I/O, keeps a clock or
// starts a goroutine; time is always an argument.
package cron

import (
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool"
	lib "github.com/netresearch/go-cron"
)

// MinInterval is the least time between two slots of a schedule: each slot
// is a job, with its directory on the share and its row in the store.
const MinInterval = 2 * time.Second

// MaxExprLen bounds an expression.
const MaxExprLen = 256

// The fields of crontab (minute hour day-of-month month day-of-week), with
// seconds first when six are given, the descriptors (@daily, @every 10m,
// ...), and a day matching when either its day of month or its day of week
// does, as in crontab when both are restricted.
var parser = lib.MustNewParser(lib.Minute | lib.Hour | lib.Dom | lib.Month | lib.Dow | lib.Descriptor | lib.DowOrDom).
	WithSecondOptional()

// Schedule is a parsed expression in its time zone.
type Schedule struct {
	expr  string
	spec  *lib.SpecSchedule // crontab fields
	every time.Duration     // @every: slots this far apart, from the first
}

// Parse reads expr in the time zone loc. Errors are EInvalid naming field
// "cron"; a time zone inside the expression is refused (it belongs in the
// schedule's own). A new schedule's expression is checked too (Check).
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, dspool.Invalid("cron", "is empty: give five fields (minute hour day month weekday), e.g. '0 2 * * *', or @daily, @every 1h")
	}
	if len(expr) > MaxExprLen {
		return nil, dspool.Invalid("cron", "is %d bytes long: at most %d", len(expr), MaxExprLen)
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, dspool.Invalid("cron", "%q names a time zone: give it as the schedule's time zone (--tz) instead", expr)
	}
	parsed, err := parser.Parse(expr)
	if err != nil {
		return nil, dspool.Invalid("cron", "%q is not a cron expression: %v; give five fields (minute hour day month weekday), six with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly, @every DURATION", expr, err)
	}
	s := &Schedule{expr: expr}
	switch p := parsed.(type) {
	case *lib.SpecSchedule:
		p.Location = loc
		s.spec = p
	case lib.ConstantDelaySchedule:
		if p.Delay <= 0 {
			return nil, dspool.Invalid("cron", "%q fires every %s: give a positive duration", expr, p.Delay)
		}
		s.every = p.Delay
	default:
		return nil, fmt.Errorf("cron expression %q: unexpected schedule %T", expr, parsed)
	}
	return s, nil
}

// Check refuses, with an EInvalid error naming field "cron", a schedule
// whose slots come closer than MinInterval or that never fires after now.
// The seconds field repeats each minute and the others are at least a
// minute apart, so the gaps among the next 61 slots are all the gaps
// shorter than a minute.
func (s *Schedule) Check(now time.Time) error {
	expr := s.expr
	if s.every > 0 {
		if s.every < MinInterval {
			return dspool.Invalid("cron", "%q fires every %s: at most one run every %s", expr, s.every, MinInterval)
		}
		return nil
	}
	t := s.spec.Next(now)
	if t.IsZero() {
		return dspool.Invalid("cron", "%q never fires: no date matches it", expr)
	}
	for range 60 {
		u := s.spec.Next(t)
		if u.IsZero() {
			break
		}
		if gap := u.Sub(t); gap < MinInterval {
			return dspool.Invalid("cron", "%q fires %s apart at %s: at most one run every %s", expr, gap, t.Format(time.TimeOnly), MinInterval)
		}
		t = u
	}
	return nil
}

// maxRepeated bounds the slots Next passes over in an hour that a change
// of daylight-saving time repeats: 1,800 at 2 s apart.
const maxRepeated = 4000

// Next is the first slot after t; the zero time when there is none.
//
// A local time fires once. Where daylight-saving time ends and an hour
// repeats, the library gives its times again; as crontab does for times
// of day, Next passes over a slot whose local time is not after t's.
// Where it begins, a local time that does not exist fires at the same
// offset after the jump (02:30 for 01:30 when 01:00 becomes 02:00).
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Truncate(time.Second).Add(s.every)
	}
	loc := s.spec.Location
	n := s.spec.Next(t)
	for range maxRepeated {
		if n.IsZero() || wallClock(n, loc).After(wallClock(t, loc)) {
			break
		}
		n = s.spec.Next(n)
	}
	return n
}

// wallClock is t's local time in loc, as if it were UTC: comparable
// across a change of offset.
func wallClock(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	y, m, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, m, d, h, mi, sec, t.Nanosecond(), time.UTC)
}

// Due says what to do at now about a schedule whose next slot is next:
// nothing (ok false) while next is after now; else fire slot, the latest
// slot at or before now (next itself, unless the control plane was away
// or late past more slots: those are not run), and wait for following.
func (s *Schedule) Due(next, now time.Time) (slot, following time.Time, ok bool) {
	if next.IsZero() || next.After(now) {
		return time.Time{}, next, false
	}
	slot = next
	if s.every > 0 {
		slot = next.Add(now.Sub(next) / s.every * s.every)
	} else if after := s.spec.Next(now); !after.IsZero() {
		// The slot before the first one after now is the latest at or
		// before it.
		if p := s.spec.Prev(after); !p.Before(next) && !p.After(now) {
			slot = p
		}
	}
	return slot, s.Next(slot), true
}
