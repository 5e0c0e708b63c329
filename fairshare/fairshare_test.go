package fairshare_test

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool/fairshare"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*max(1, math.Abs(b)) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestHeld(t *testing.T) {
	h := time.Hour
	tests := []struct {
		name     string
		r        fairshare.Rate
		from, to time.Time
		want     fairshare.Usage
	}{
		{name: "nothing held", r: fairshare.Rate{CPUs: 2}, from: t0, to: t0},
		{name: "ends before it starts", r: fairshare.Rate{CPUs: 2}, from: t0.Add(h), to: t0},
		// Over one half-life, the integral of 2^(-x/h) is h/(2 ln 2).
		{name: "one half-life", r: fairshare.Rate{CPUs: 2, GPUs: 1, GiB: 4}, from: t0, to: t0.Add(h),
			want: fairshare.Usage{CPUSeconds: 2 * 3600 / (2 * math.Ln2), GPUSeconds: 3600 / (2 * math.Ln2), GiBSeconds: 4 * 3600 / (2 * math.Ln2)}},
		// A second, against an hour's half-life, hardly decays.
		{name: "a second", r: fairshare.Rate{CPUs: 1}, from: t0, to: t0.Add(time.Second), want: fairshare.Usage{CPUSeconds: 0.99990373}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fairshare.Held(tc.r, tc.from, tc.to, h)
			if math.Abs(got.CPUSeconds-tc.want.CPUSeconds) > 1e-6 || !near(got.GPUSeconds, tc.want.GPUSeconds) || !near(got.GiBSeconds, tc.want.GiBSeconds) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestLedger: usage halves every half-life, charges in any order sum to
// the same, and Forget drops what has decayed away.
func TestLedger(t *testing.T) {
	k := fairshare.Key{User: "ann"}
	a := fairshare.NewLedger(time.Hour)
	a.Charge(k, fairshare.Usage{CPUSeconds: 100}, t0)
	a.Charge(k, fairshare.Usage{CPUSeconds: 100}, t0.Add(time.Hour))
	b := fairshare.NewLedger(time.Hour)
	b.Charge(k, fairshare.Usage{CPUSeconds: 100}, t0.Add(time.Hour))
	b.Charge(k, fairshare.Usage{CPUSeconds: 100}, t0)
	for name, l := range map[string]*fairshare.Ledger{"in order": a, "out of order": b} {
		if got := l.Usage(t0.Add(2 * time.Hour))[k].CPUSeconds; !near(got, 75) {
			t.Errorf("%s: after two hours got %v cpu-seconds, want 75 (25 + 50)", name, got)
		}
	}
	a.Forget(t0.Add(20*time.Hour), fairshare.DefaultBilling, 0.01)
	if got := len(a.Usage(t0)); got != 0 {
		t.Errorf("after 20 half-lives and Forget: %d accounts, want 0", got)
	}
}

func TestFactors(t *testing.T) {
	ann, bob := fairshare.Key{User: "ann"}, fairshare.Key{User: "bob"}
	vAnn, vBob, vCy := fairshare.Key{Team: "vision", User: "ann"}, fairshare.Key{Team: "vision", User: "bob"}, fairshare.Key{Team: "nlp", User: "cy"}
	cpu := func(s float64) fairshare.Usage { return fairshare.Usage{CPUSeconds: s} }
	tests := []struct {
		name   string
		active []fairshare.Key
		usage  map[fairshare.Key]fairshare.Usage
		shares fairshare.Shares
		want   map[fairshare.Key]fairshare.Factor
		teams  map[string]fairshare.Factor
	}{{
		name:   "nobody used anything: full factors",
		active: []fairshare.Key{ann, bob},
		want:   map[fairshare.Key]fairshare.Factor{ann: {Target: 0.5, Factor: 1}, bob: {Target: 0.5, Factor: 1}},
	}, {
		name:   "each used their share: one half",
		active: []fairshare.Key{ann, bob, ann},
		usage:  map[fairshare.Key]fairshare.Usage{ann: cpu(10), bob: cpu(10)},
		want: map[fairshare.Key]fairshare.Factor{ann: {Target: 0.5, Usage: 0.5, Effective: 0.5, Factor: 0.5},
			bob: {Target: 0.5, Usage: 0.5, Effective: 0.5, Factor: 0.5}},
	}, {
		name:   "raw shares set the targets; usage of accounts without work still counts in the total",
		active: []fairshare.Key{ann, bob},
		usage:  map[fairshare.Key]fairshare.Usage{ann: cpu(30), fairshare.Key{User: "idle"}: cpu(70)},
		shares: fairshare.Shares{Users: map[string]float64{"ann": 3}},
		want: map[fairshare.Key]fairshare.Factor{ann: {Target: 0.75, Usage: 0.3, Effective: 0.3, Factor: math.Exp2(-0.4)},
			bob: {Target: 0.25, Factor: 1}},
	}, {
		name:   "a team's members split its share, and its usage pulls theirs",
		active: []fairshare.Key{vAnn, vBob, vCy},
		usage:  map[fairshare.Key]fairshare.Usage{vAnn: cpu(50), vCy: cpu(50)},
		want: map[fairshare.Key]fairshare.Factor{
			vAnn: {Target: 0.25, Usage: 0.5, Effective: 0.5, Factor: 0.25},
			vBob: {Target: 0.25, Effective: 0.25, Factor: 0.5},
			vCy:  {Target: 0.5, Usage: 0.5, Effective: 0.5, Factor: 0.5}},
		teams: map[string]fairshare.Factor{"vision": {Target: 0.5, Usage: 0.5, Effective: 0.5, Factor: 0.5},
			"nlp": {Target: 0.5, Usage: 0.5, Effective: 0.5, Factor: 0.5}},
	}, {
		name:   "a share of 0: no factor",
		active: []fairshare.Key{ann, bob},
		shares: fairshare.Shares{Users: map[string]float64{"bob": 0}},
		want:   map[fairshare.Key]fairshare.Factor{ann: {Target: 1, Factor: 1}, bob: {}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := fairshare.Factors(tc.active, tc.usage, tc.shares, fairshare.DefaultBilling)
			if len(st.Users) != len(tc.want) {
				t.Errorf("got %d accounts, want %d: %+v", len(st.Users), len(tc.want), st.Users)
			}
			for k, want := range tc.want {
				got := st.Users[k]
				if !near(got.Target, want.Target) || !near(got.Usage, want.Usage) || !near(got.Effective, want.Effective) || !near(got.Factor, want.Factor) {
					t.Errorf("%+v: got %+v, want %+v", k, got, want)
				}
			}
			for name, want := range tc.teams {
				if got := st.Teams[name]; !near(got.Target, want.Target) || !near(got.Factor, want.Factor) || !near(got.Usage, want.Usage) {
					t.Errorf("team %s: got %+v, want %+v", name, got, want)
				}
			}
		})
	}
}

func TestScore(t *testing.T) {
	c := fairshare.Config{}.WithDefaults()
	if got := c.Score(10, 0, 0.5); got != 510 {
		t.Errorf("priority 10, no wait, factor 0.5: got %v, want 510", got)
	}
	if got := c.Score(0, 14*24*time.Hour, 0); got != 100 {
		t.Errorf("a wait past MaxAge: got %v, want the full age weight, 100", got)
	}
	if c.Reserves(9*time.Minute) || !c.Reserves(10*time.Minute) {
		t.Errorf("Reserves: want false at 9m and true at the default 10m")
	}
}

// TestReport: teams sum their members' seconds; users with work but no
// usage are listed; inactive accounts have no target.
func TestReport(t *testing.T) {
	vAnn, vBob, cy := fairshare.Key{Team: "vision", User: "ann"}, fairshare.Key{Team: "vision", User: "bob"}, fairshare.Key{User: "cy"}
	usage := map[fairshare.Key]fairshare.Usage{vAnn: {CPUSeconds: 30}, vBob: {CPUSeconds: 10}, fairshare.Key{User: "old"}: {CPUSeconds: 60}}
	st := fairshare.Factors([]fairshare.Key{vAnn, cy}, usage, fairshare.Shares{}, fairshare.DefaultBilling)
	rep := fairshare.Report(t0, time.Hour, usage, st, fairshare.Shares{Users: map[string]float64{"ann": 2}})
	if len(rep.Teams) != 1 || rep.Teams[0].Name != "vision" || rep.Teams[0].CPUSeconds != 40 || !rep.Teams[0].Active || rep.Teams[0].Target != 0.5 {
		t.Errorf("teams: %+v; want vision with 40 cpu-seconds, active, target 0.5", rep.Teams)
	}
	var got []string
	for _, u := range rep.Users {
		got = append(got, fmt.Sprintf("%s/%s active=%v target=%.2f shares=%v", u.Team, u.Name, u.Active, u.Target, u.Shares))
	}
	want := []string{"/cy active=true target=0.50 shares=1", "/old active=false target=0.00 shares=1",
		"vision/ann active=true target=0.50 shares=2", "vision/bob active=false target=0.00 shares=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("users:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
