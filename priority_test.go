package dspool_test

import (
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

func prange(lo, hi int) *dspool.PriorityRange { return &dspool.PriorityRange{Min: lo, Max: hi} }

func TestJobPriorityBounds(t *testing.T) {
	for _, c := range []struct {
		name            string
		team            string
		user, teamL     dspool.Limits
		admin           bool
		want            dspool.PriorityRange
		wantDefault     int
		wantWhose, fail string
	}{
		{name: "nothing set: lower only", team: "vision", want: dspool.DefaultPriorityRange},
		{name: "nothing set, admin: the default range bounds only the default", team: "vision", admin: true, want: dspool.DefaultPriorityRange},
		{name: "team range", team: "vision", teamL: dspool.Limits{Priority: prange(-100, 100)}, want: *prange(-100, 100), wantWhose: "team vision"},
		{name: "user range", team: "vision", user: dspool.Limits{Priority: prange(-10, 50)}, want: *prange(-10, 50), wantWhose: "user ann"},
		{name: "both: their intersection", team: "vision", user: dspool.Limits{Priority: prange(-10, 50)}, teamL: dspool.Limits{Priority: prange(0, 100)},
			want: *prange(0, 50), wantWhose: "user ann and team vision"},
		{name: "no team: the team's range does not apply", user: dspool.Limits{Priority: prange(-10, 50)}, teamL: dspool.Limits{Priority: prange(0, 100)},
			want: *prange(-10, 50), wantWhose: "user ann"},
		{name: "ranges that do not meet", team: "vision", user: dspool.Limits{Priority: prange(-10, -5)}, teamL: dspool.Limits{Priority: prange(0, 100)},
			fail: "priority: the priority range of user ann (-10..-5) and that of team vision (0..100) do not meet"},
		{name: "the user's default first", team: "vision", user: dspool.Limits{DefaultPriority: ptr(-5)},
			teamL: dspool.Limits{Priority: prange(-100, 100), DefaultPriority: ptr(10)}, want: *prange(-100, 100), wantDefault: -5, wantWhose: "team vision"},
		{name: "the team's default", team: "vision", teamL: dspool.Limits{Priority: prange(-100, 100), DefaultPriority: ptr(10)},
			want: *prange(-100, 100), wantDefault: 10, wantWhose: "team vision"},
		{name: "a default clamped into the range", team: "vision", user: dspool.Limits{Priority: prange(-50, 5)},
			teamL: dspool.Limits{Priority: prange(-100, 100), DefaultPriority: ptr(10)}, want: *prange(-50, 5), wantDefault: 5, wantWhose: "user ann and team vision"},
		{name: "a team default with no range: clamped to 0", team: "vision", teamL: dspool.Limits{DefaultPriority: ptr(10)}, want: dspool.DefaultPriorityRange},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := dspool.JobPriorityBounds("ann", c.team, c.user, c.teamL, c.admin)
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) || dspool.ErrorCode(err) != dspool.EInvalid {
					t.Fatalf("got %v, want an invalid error with %q", err, c.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Range != c.want || b.Default != c.wantDefault || b.Whose != c.wantWhose || b.Admin != c.admin {
				t.Errorf("got %+v, want range %v, default %d, whose %q", b, c.want, c.wantDefault, c.wantWhose)
			}
		})
	}
}

func ptr(n int) *int { return &n }

func TestPriorityBoundsPriority(t *testing.T) {
	team := dspool.PriorityBounds{Range: *prange(-100, 100), Default: 10, Whose: "team vision"}
	none := dspool.PriorityBounds{Range: dspool.DefaultPriorityRange}
	admin := dspool.PriorityBounds{Range: dspool.DefaultPriorityRange, Admin: true}
	for _, c := range []struct {
		name  string
		b     dspool.PriorityBounds
		asked *int
		want  int
		fail  string
	}{
		{name: "none given: the default", b: team, want: 10},
		{name: "within", b: team, asked: ptr(100), want: 100},
		{name: "0 given is 0, not the default", b: team, asked: ptr(0), want: 0},
		{name: "above", b: team, asked: ptr(500),
			fail: "priority: 500 is out of range for user ann in team vision: give -100 to 100 (the range of team vision), or ask an admin"},
		{name: "below", b: team, asked: ptr(-101), fail: "give -100 to 100"},
		{name: "no range: lower", b: none, asked: ptr(-1000), want: -1000},
		{name: "no range: raise", b: none, asked: ptr(1),
			fail: "priority: 1 is out of range for user ann in team vision: give -1000 to 0 (with no range set, only an admin may raise a job above 0), or ask an admin"},
		{name: "admin: any", b: admin, asked: ptr(1000), want: 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.b.Priority(c.asked, "ann", "vision")
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) || dspool.ErrorCode(err) != dspool.EInvalid {
					t.Fatalf("got %d, %v; want an invalid error with %q", got, err, c.fail)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestPriorityChange(t *testing.T) {
	owner := dspool.PriorityBounds{Range: *prange(-100, 0), Whose: "user ann"}
	for _, c := range []struct {
		name        string
		c           dspool.PriorityChanger
		current, to int
		fail        string
	}{
		{name: "admin: any", c: dspool.PriorityChanger{Admin: true}, to: 1000},
		{name: "admin: not past the bounds of every job", c: dspool.PriorityChanger{Admin: true}, to: 1001, fail: "give -1000 to 1000"},
		{name: "maintainer within the team's range", c: dspool.PriorityChanger{Maintainer: true, TeamRange: prange(-100, 100)}, to: 100},
		{name: "maintainer past the team's range", c: dspool.PriorityChanger{Maintainer: true, TeamRange: prange(-100, 100)}, to: 101,
			fail: "priority: 101 is out of range for a maintainer of team vision: give -100 to 100 (the range of team vision), or ask an admin"},
		{name: "maintainer of a team with no range: lower only", c: dspool.PriorityChanger{Maintainer: true}, to: 1,
			fail: "give -1000 to 0 (with no range set, only an admin may raise a job above 0)"},
		{name: "owner within their range", c: dspool.PriorityChanger{Owner: true, OwnerBounds: owner}, current: -50, to: -10},
		{name: "owner raising past it", c: dspool.PriorityChanger{Owner: true, OwnerBounds: owner}, current: -50, to: 10,
			fail: "priority: 10 is out of range for user ann in team vision: give -100 to 0 (the range of user ann), or ask an admin"},
		{name: "owner lowering a raised job", c: dspool.PriorityChanger{Owner: true, OwnerBounds: owner}, current: 50, to: 20},
		{name: "owner below their range", c: dspool.PriorityChanger{Owner: true, OwnerBounds: owner}, current: 0, to: -101, fail: "give -100 to 0"},
		{name: "owner who maintains: the wider", c: dspool.PriorityChanger{Owner: true, OwnerBounds: owner, Maintainer: true, TeamRange: prange(-100, 100)}, to: 100},
		{name: "neither", c: dspool.PriorityChanger{OwnerBounds: owner}, to: -1, fail: "out of range"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.c.CheckChange("ann", "vision", c.current, c.to)
			if c.fail == "" && err != nil {
				t.Fatalf("got %v, want it allowed", err)
			}
			if c.fail != "" && (err == nil || !strings.Contains(err.Error(), c.fail) || dspool.ErrorCode(err) != dspool.EInvalid) {
				t.Fatalf("got %v, want an invalid error with %q", err, c.fail)
			}
		})
	}
}

func TestLimitsPriority(t *testing.T) {
	for _, c := range []struct {
		name string
		l    dspool.Limits
		str  string
		fail string
	}{
		{name: "range and default", l: dspool.Limits{Priority: prange(-100, 100), DefaultPriority: ptr(10)}, str: "priority -100..100, default priority 10"},
		{name: "a default alone", l: dspool.Limits{GPUs: ptr(2), DefaultPriority: ptr(-5)}, str: "2 gpus, default priority -5"},
		{name: "an empty range", l: dspool.Limits{Priority: prange(10, -10)}, fail: "priority: 10..-10 is not a range of priorities"},
		{name: "past the bounds", l: dspool.Limits{Priority: prange(-1001, 0)}, fail: "priority: -1001..0 is not a range"},
		{name: "a default out of its range", l: dspool.Limits{Priority: prange(-10, 10), DefaultPriority: ptr(20)},
			fail: "default_priority: 20 is outside the priority range -10..10"},
		{name: "a default past the bounds", l: dspool.Limits{DefaultPriority: ptr(2000)}, fail: "default_priority: 2000 is out of range: give -1000 to 1000"},
		{name: "shares", l: dspool.Limits{GPUs: ptr(2), Shares: ptr(3)}, str: "2 gpus, 3 shares"},
		{name: "negative shares", l: dspool.Limits{Shares: ptr(-1)}, fail: "shares: -1 is out of range: give 0 to 1000000 shares"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.l.Validate()
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("got %v, want %q", err, c.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.l.String(); got != c.str {
				t.Errorf("got %q, want %q", got, c.str)
			}
			if c.l.None() {
				t.Error("None() = true for limits with a priority")
			}
		})
	}
}

func TestParsePriorityRange(t *testing.T) {
	for _, c := range []struct {
		in   string
		want dspool.PriorityRange
		fail bool
	}{
		{in: "-100..100", want: *prange(-100, 100)},
		{in: " -50 .. -10 ", want: *prange(-50, -10)},
		{in: "5", want: *prange(5, 5)},
		{in: "10..-10", fail: true},
		{in: "-100..", fail: true},
		{in: "a..b", fail: true},
		{in: "0..1001", fail: true},
	} {
		got, err := dspool.ParsePriorityRange("--priority", c.in)
		if c.fail {
			if err == nil || dspool.ErrorCode(err) != dspool.EInvalid || !strings.HasPrefix(err.Error(), "--priority: ") {
				t.Errorf("%q: got %v, %v; want an invalid error naming --priority", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
