package dspool_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Lisbon wherever the tests run

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// autoscalePool is the JSON of a valid pool with the given autoscale
// object (and any other fields, written as `"key":value,`).
func autoscalePool(autoscale string, fields ...string) string {
	return `{"name":"gpu",` + strings.Join(fields, "") + `"node":{"cpus":8,"memory":"32GiB","gpus":1},"autoscale":` + autoscale + `}`
}

// decodePool decodes and normalizes a pool as the pools file's first.
func decodePool(data string) (dspool.Pool, error) {
	var p dspool.Pool
	if err := dspool.DecodeJSON([]byte(data), &p); err != nil {
		return p, err
	}
	return p, p.Normalize("pools[0].")
}

func TestPoolAutoscaleNormalizeErrors(t *testing.T) {
	rule := func(fields string) string {
		return `{"max":4,"rules":[{"metric":"cpu_percent","operator":">","threshold":75,"action":"out"` + fields + `}]}`
	}
	schedule := func(fields string) string {
		return `{"max":4,"schedules":[{"days":["weekdays"],"from":"08:00","to":"18:00","min":1` + fields + `}]}`
	}
	many := func(n int, item string) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	okRule := `{"metric":"cpu_percent","operator":">","threshold":75,"action":"out"}`
	okSchedule := `{"days":["mon"],"from":"08:00","to":"18:00"}`
	tests := []struct {
		name string
		json string
		want string // the field the error names; "" for valid
	}{
		// DecodeJSON does not descend into the autoscale pointer, so what
		// it refuses (a wrong type, an unknown field, a bad duration) is
		// named by the object ("autoscale", "autoscale.rules.threshold")
		// without the prefix and the index; those cases want a prefix.
		{"minimal", autoscalePool(`{"max":4}`), ""},
		{"full", autoscalePool(`{"min":1,"max":8,"idle_timeout":"30m","warm_spares":1,"scale_in_policy":"oldest","boot_timeout":"5m","wait_timeout":"15m",
			"rules":[{"metric":"queued_jobs","operator":">=","threshold":500,"window":"1m","action":"out","step":2,"cooldown":"2m"}],
			"schedules":[{"days":["mon","TUE"],"from":"22:00","to":"06:00","timezone":"Europe/Lisbon","min":2,"max":4}]}`), ""},
		{"durations at their bounds", autoscalePool(`{"max":4,"idle_timeout":"60s","boot_timeout":"1s","wait_timeout":"168h"}`), ""},
		{"a duration without a unit", autoscalePool(`{"max":4,"idle_timeout":10}`), "autoscale.idle_timeout"},
		{"all day", autoscalePool(schedule(`,"from":"00:00","to":"24:00"`)), ""},
		{"every metric", autoscalePool(`{"max":4,"rules":[` + strings.Join(func() []string {
			var r []string
			for _, m := range autoscale.Metrics {
				r = append(r, `{"metric":"`+m+`","operator":"<=","threshold":100,"action":"in"}`)
			}
			return r
		}(), ",") + `]}`), ""},
		{"most rules", autoscalePool(`{"max":4,"rules":[` + many(dspool.MaxScaleRules, okRule) + `]}`), ""},
		{"most schedules", autoscalePool(`{"max":4,"schedules":[` + many(dspool.MaxScaleSchedules, okSchedule) + `]}`), ""},

		{"static provider", autoscalePool(`{"max":4}`, `"provider":"static",`), "pools[0].autoscale"},
		{"count and autoscale", autoscalePool(`{"max":4}`, `"count":2,`), "pools[0].count"},
		{"no max", autoscalePool(`{"min":1}`), "pools[0].autoscale.max"},
		{"max zero", autoscalePool(`{"max":0}`), "pools[0].autoscale.max"},
		{"max too big", autoscalePool(`{"max":10001}`), "pools[0].autoscale.max"},
		{"max as text", autoscalePool(`{"max":"4"}`), "autoscale*"},
		{"negative min", autoscalePool(`{"min":-1,"max":4}`), "pools[0].autoscale.min"},
		{"min above max", autoscalePool(`{"min":5,"max":4}`), "pools[0].autoscale.min"},
		{"negative warm spares", autoscalePool(`{"max":4,"warm_spares":-1}`), "pools[0].autoscale.warm_spares"},
		{"warm spares above max", autoscalePool(`{"max":4,"warm_spares":5}`), "pools[0].autoscale.warm_spares"},
		{"unknown scale-in policy", autoscalePool(`{"max":4,"scale_in_policy":"random"}`), "pools[0].autoscale.scale_in_policy"},
		{"scale-in policy in capitals", autoscalePool(`{"max":4,"scale_in_policy":"LRU"}`), "pools[0].autoscale.scale_in_policy"},
		{"negative idle timeout", autoscalePool(`{"max":4,"idle_timeout":"-1m"}`), "pools[0].autoscale.idle_timeout"},
		{"idle timeout under a second", autoscalePool(`{"max":4,"idle_timeout":"500ms"}`), "pools[0].autoscale.idle_timeout"},
		{"idle timeout over a week", autoscalePool(`{"max":4,"idle_timeout":"169h"}`), "pools[0].autoscale.idle_timeout"},
		{"idle timeout not a duration", autoscalePool(`{"max":4,"idle_timeout":"soon"}`), "autoscale*"},
		{"boot timeout under a second", autoscalePool(`{"max":4,"boot_timeout":"500ms"}`), "pools[0].autoscale.boot_timeout"},
		{"wait timeout over a week", autoscalePool(`{"max":4,"wait_timeout":"200h"}`), "pools[0].autoscale.wait_timeout"},
		{"unknown autoscale field", autoscalePool(`{"max":4,"maximum":5}`), "autoscale*"},

		{"too many rules", autoscalePool(`{"max":4,"rules":[` + many(dspool.MaxScaleRules+1, okRule) + `]}`), "pools[0].autoscale.rules"},
		{"unknown metric", autoscalePool(rule(`,"metric":"load"`)), "pools[0].autoscale.rules[0].metric"},
		{"no metric", autoscalePool(`{"max":4,"rules":[{"operator":">","threshold":1,"action":"out"}]}`), "pools[0].autoscale.rules[0].metric"},
		{"second rule's metric", autoscalePool(`{"max":4,"rules":[` + okRule + `,{"metric":"cpu","operator":">","threshold":1,"action":"out"}]}`),
			"pools[0].autoscale.rules[1].metric"},
		{"unknown operator", autoscalePool(rule(`,"operator":"=="`)), "pools[0].autoscale.rules[0].operator"},
		{"no operator", autoscalePool(rule(`,"operator":""`)), "pools[0].autoscale.rules[0].operator"},
		{"negative threshold", autoscalePool(rule(`,"threshold":-1`)), "pools[0].autoscale.rules[0].threshold"},
		{"percentage above 100", autoscalePool(rule(`,"threshold":100.5`)), "pools[0].autoscale.rules[0].threshold"},
		{"count above a million", autoscalePool(rule(`,"metric":"queued_jobs","threshold":1000001`)), "pools[0].autoscale.rules[0].threshold"},
		{"threshold as text", autoscalePool(rule(`,"threshold":"high"`)), "autoscale*"},
		{"unknown action", autoscalePool(rule(`,"action":"up"`)), "pools[0].autoscale.rules[0].action"},
		{"no action", autoscalePool(`{"max":4,"rules":[{"metric":"cpu_percent","operator":">","threshold":1}]}`), "pools[0].autoscale.rules[0].action"},
		{"window under a second", autoscalePool(rule(`,"window":"500ms"`)), "pools[0].autoscale.rules[0].window"},
		{"negative window", autoscalePool(rule(`,"window":"-5m"`)), "pools[0].autoscale.rules[0].window"},
		{"window over a day", autoscalePool(rule(`,"window":"25h"`)), "pools[0].autoscale.rules[0].window"},
		{"negative step", autoscalePool(rule(`,"step":-1`)), "pools[0].autoscale.rules[0].step"},
		{"step above max", autoscalePool(rule(`,"step":5`)), "pools[0].autoscale.rules[0].step"},
		{"negative cooldown", autoscalePool(rule(`,"cooldown":"-1s"`)), "pools[0].autoscale.rules[0].cooldown"},
		{"cooldown under a second", autoscalePool(rule(`,"cooldown":"500ms"`)), "pools[0].autoscale.rules[0].cooldown"},
		{"cooldown over a day", autoscalePool(rule(`,"cooldown":"25h"`)), "pools[0].autoscale.rules[0].cooldown"},
		{"unknown rule field", autoscalePool(rule(`,"metrics":"cpu_percent"`)), "autoscale*"},

		{"too many schedules", autoscalePool(`{"max":4,"schedules":[` + many(dspool.MaxScaleSchedules+1, okSchedule) + `]}`), "pools[0].autoscale.schedules"},
		{"no days", autoscalePool(schedule(`,"days":[]`)), "pools[0].autoscale.schedules[0].days"},
		{"unknown day", autoscalePool(schedule(`,"days":["someday"]`)), "pools[0].autoscale.schedules[0].days[0]"},
		{"second day unknown", autoscalePool(schedule(`,"days":["weekends","monday"]`)), "pools[0].autoscale.schedules[0].days[1]"},
		{"from without a leading zero", autoscalePool(schedule(`,"from":"8:00"`)), "pools[0].autoscale.schedules[0].from"},
		{"from past 24", autoscalePool(schedule(`,"from":"25:00"`)), "pools[0].autoscale.schedules[0].from"},
		{"from with 60 minutes", autoscalePool(schedule(`,"from":"12:60"`)), "pools[0].autoscale.schedules[0].from"},
		{"from with seconds", autoscalePool(schedule(`,"from":"12:00:00"`)), "pools[0].autoscale.schedules[0].from"},
		{"negative from", autoscalePool(schedule(`,"from":"-1:00"`)), "pools[0].autoscale.schedules[0].from"},
		{"to past 24:00", autoscalePool(schedule(`,"to":"24:01"`)), "pools[0].autoscale.schedules[0].to"},
		{"to not a time", autoscalePool(schedule(`,"to":"noon"`)), "pools[0].autoscale.schedules[0].to"},
		{"no to", autoscalePool(`{"max":4,"schedules":[{"days":["mon"],"from":"08:00"}]}`), "pools[0].autoscale.schedules[0].to"},
		{"from equals to", autoscalePool(schedule(`,"from":"08:00","to":"08:00"`)), "pools[0].autoscale.schedules[0].to"},
		{"from 24:00 to 00:00 is empty", autoscalePool(schedule(`,"from":"24:00","to":"00:00"`)), "pools[0].autoscale.schedules[0].to"},
		{"unknown time zone", autoscalePool(`{"max":4,"schedules":[` + okSchedule + `,{"days":["mon"],"from":"08:00","to":"18:00","timezone":"Mars/Olympus"}]}`),
			"pools[0].autoscale.schedules[1].timezone"},
		{"time zone escaping the zone database", autoscalePool(schedule(`,"timezone":"../../etc/passwd"`)), "pools[0].autoscale.schedules[0].timezone"},
		{"time zone as a path", autoscalePool(schedule(`,"timezone":"/etc/localtime"`)), "pools[0].autoscale.schedules[0].timezone"},
		{"negative schedule min", autoscalePool(schedule(`,"min":-1`)), "pools[0].autoscale.schedules[0].min"},
		{"schedule min above max", autoscalePool(schedule(`,"min":5`)), "pools[0].autoscale.schedules[0].min"},
		{"schedule max below its min", autoscalePool(schedule(`,"min":2,"max":1`)), "pools[0].autoscale.schedules[0].max"},
		{"schedule max above the pool's", autoscalePool(schedule(`,"max":5`)), "pools[0].autoscale.schedules[0].max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodePool(tt.json)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			var e *dspool.Error
			field, isPrefix := strings.CutSuffix(tt.want, "*")
			if !errors.As(err, &e) || e.Code != dspool.EInvalid || e.Field != field && !(isPrefix && strings.HasPrefix(e.Field, field)) {
				t.Fatalf("got %v, want an invalid error naming %s", err, tt.want)
			}
			if e.Message == "" {
				t.Errorf("error naming %s has no message", e.Field)
			}
		})
	}
}

func TestPoolAutoscaleDefaults(t *testing.T) {
	p, err := decodePool(autoscalePool(`{"max":4,
		"rules":[{"metric":"cpu_percent","operator":">","threshold":75,"action":"out"},
			{"metric":"cpu_percent","operator":"<","threshold":10,"action":"in","window":"1m","step":2,"cooldown":"1h"}],
		"schedules":[{"days":["weekdays"],"from":"08:00","to":"18:00","min":1},
			{"days":["weekends"],"from":"10:00","to":"12:00","timezone":"Europe/Lisbon","min":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	a := p.Autoscale
	if a.Min != 0 || a.Max != 4 || a.WarmSpares != 0 {
		t.Errorf("got min %d max %d warm_spares %d, want 0 4 0", a.Min, a.Max, a.WarmSpares)
	}
	if a.IdleTimeout != dspool.Duration(10*time.Minute) || a.BootTimeout != dspool.Duration(10*time.Minute) || a.WaitTimeout != dspool.Duration(10*time.Minute) {
		t.Errorf("got idle_timeout %v boot_timeout %v wait_timeout %v, want 10m each",
			time.Duration(a.IdleTimeout), time.Duration(a.BootTimeout), time.Duration(a.WaitTimeout))
	}
	if a.ScaleInPolicy != dspool.ScaleInLRU {
		t.Errorf("got scale_in_policy %q, want lru", a.ScaleInPolicy)
	}
	want := dspool.ScaleRule{Metric: "cpu_percent", Operator: ">", Threshold: 75, Action: "out",
		Window: dspool.Duration(5 * time.Minute), Step: 1, Cooldown: dspool.Duration(5 * time.Minute)}
	if a.Rules[0] != want {
		t.Errorf("got rule %+v, want %+v", a.Rules[0], want)
	}
	// What is given is kept.
	want = dspool.ScaleRule{Metric: "cpu_percent", Operator: "<", Threshold: 10, Action: "in",
		Window: dspool.Duration(time.Minute), Step: 2, Cooldown: dspool.Duration(time.Hour)}
	if a.Rules[1] != want {
		t.Errorf("got rule %+v, want %+v", a.Rules[1], want)
	}
	if got := a.Schedules[0].Timezone; got != "UTC" {
		t.Errorf("got timezone %q, want UTC", got)
	}
	if got := a.Schedules[1].Timezone; got != "Europe/Lisbon" {
		t.Errorf("got timezone %q, want Europe/Lisbon kept", got)
	}

	given := dspool.Autoscale{Min: 1, Max: 4, IdleTimeout: dspool.Duration(time.Hour), BootTimeout: dspool.Duration(time.Minute),
		WaitTimeout: dspool.Duration(time.Second), ScaleInPolicy: dspool.ScaleInNewest}
	q := dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &given}
	if err := q.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*q.Autoscale, dspool.Autoscale{Min: 1, Max: 4, IdleTimeout: dspool.Duration(time.Hour), BootTimeout: dspool.Duration(time.Minute),
		WaitTimeout: dspool.Duration(time.Second), ScaleInPolicy: dspool.ScaleInNewest}) {
		t.Errorf("normalize changed what was given: %+v", *q.Autoscale)
	}
}

func TestScaleScheduleDays(t *testing.T) {
	all := []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	tests := []struct {
		days []string
		want []string
	}{
		{[]string{"weekdays"}, all[:5]},
		{[]string{"weekends"}, all[5:]},
		{[]string{"daily"}, all},
		{[]string{"everyday"}, all},
		{[]string{"Weekdays"}, all[:5]},
		{[]string{"MON", "Fri"}, []string{"mon", "fri"}},
		{[]string{"weekends", "mon"}, []string{"sat", "sun", "mon"}},
		{[]string{"sun"}, []string{"sun"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.days, ","), func(t *testing.T) {
			a := dspool.Autoscale{Max: 2, Schedules: []dspool.ScaleSchedule{{Days: tt.days, From: "08:00", To: "09:00"}}}
			p := dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &a}
			if err := p.Normalize(""); err != nil {
				t.Fatal(err)
			}
			if got := a.Schedules[0].Days; !slices.Equal(got, tt.want) {
				t.Errorf("got days %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScaleScheduleActive(t *testing.T) {
	lisbon, err := time.LoadLocation("Europe/Lisbon")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04 MST", s)
		if err != nil {
			panic(err)
		}
		return v
	}
	type check struct {
		at   string // in UTC
		want bool
	}
	tests := []struct {
		name     string
		schedule dspool.ScaleSchedule
		checks   []check
	}{
		{"Lisbon office hours in winter (WET, UTC+0)",
			dspool.ScaleSchedule{Days: []string{"weekdays"}, From: "08:00", To: "19:00", Timezone: "Europe/Lisbon"},
			[]check{{"2025-01-15 07:59 UTC", false}, {"2025-01-15 08:00 UTC", true}, {"2025-01-15 18:59 UTC", true},
				{"2025-01-15 19:00 UTC", false}, {"2025-01-18 12:00 UTC", false}}},
		{"Lisbon office hours in summer (WEST, UTC+1)",
			dspool.ScaleSchedule{Days: []string{"weekdays"}, From: "08:00", To: "19:00", Timezone: "Europe/Lisbon"},
			[]check{{"2025-07-16 06:59 UTC", false}, {"2025-07-16 07:00 UTC", true}, {"2025-07-16 17:59 UTC", true},
				{"2025-07-16 18:00 UTC", false}}},
		{"Lisbon on the day clocks go forward (2025-03-30 01:00 UTC, 01:00 becomes 02:00)",
			dspool.ScaleSchedule{Days: []string{"sun"}, From: "00:30", To: "01:30", Timezone: "Europe/Lisbon"},
			[]check{{"2025-03-30 00:29 UTC", false}, {"2025-03-30 00:30 UTC", true}, {"2025-03-30 00:59 UTC", true},
				{"2025-03-30 01:00 UTC", false}, {"2025-03-30 01:29 UTC", false}}},
		{"Lisbon from 02:00 on the day clocks go forward starts at 01:00 UTC",
			dspool.ScaleSchedule{Days: []string{"sun"}, From: "02:00", To: "03:00", Timezone: "Europe/Lisbon"},
			[]check{{"2025-03-30 00:59 UTC", false}, {"2025-03-30 01:00 UTC", true}, {"2025-03-30 01:59 UTC", true},
				{"2025-03-30 02:00 UTC", false}}},
		{"Lisbon on the day clocks go back (2025-10-26 01:00 UTC, 02:00 becomes 01:00): the hour runs twice",
			dspool.ScaleSchedule{Days: []string{"sun"}, From: "01:00", To: "02:00", Timezone: "Europe/Lisbon"},
			[]check{{"2025-10-25 23:59 UTC", false}, {"2025-10-26 00:00 UTC", true}, {"2025-10-26 00:59 UTC", true},
				{"2025-10-26 01:00 UTC", true}, {"2025-10-26 01:59 UTC", true}, {"2025-10-26 02:00 UTC", false}}},
		{"the day is the day in the schedule's zone",
			dspool.ScaleSchedule{Days: []string{"mon"}, From: "08:00", To: "10:00", Timezone: "Asia/Tokyo"},
			[]check{{"2025-03-02 23:00 UTC", true}, {"2025-03-03 00:59 UTC", true}, {"2025-03-03 01:00 UTC", false},
				{"2025-03-03 09:00 UTC", false}}},
		{"New York office hours",
			dspool.ScaleSchedule{Days: []string{"mon"}, From: "09:00", To: "17:00", Timezone: "America/New_York"},
			[]check{{"2025-03-03 13:59 UTC", false}, {"2025-03-03 14:00 UTC", true}, {"2025-03-03 21:59 UTC", true},
				{"2025-03-03 22:00 UTC", false}}},
		{"a window past midnight runs into the next day",
			dspool.ScaleSchedule{Days: []string{"fri"}, From: "22:00", To: "06:00"},
			[]check{{"2025-03-08 03:00 UTC", true}, {"2025-03-07 03:00 UTC", false}, {"2025-03-07 21:59 UTC", false},
				{"2025-03-07 22:00 UTC", true}, {"2025-03-07 23:59 UTC", true}, {"2025-03-08 00:00 UTC", true},
				{"2025-03-08 05:59 UTC", true}, {"2025-03-08 06:00 UTC", false}, {"2025-03-08 22:00 UTC", false},
				{"2025-03-06 23:00 UTC", false}, {"2025-03-09 03:00 UTC", false}}},
		{"a window past midnight on consecutive days",
			dspool.ScaleSchedule{Days: []string{"fri", "sat"}, From: "22:00", To: "06:00"},
			[]check{{"2025-03-08 03:00 UTC", true}, {"2025-03-08 12:00 UTC", false}, {"2025-03-08 23:00 UTC", true},
				{"2025-03-09 05:59 UTC", true}, {"2025-03-09 06:00 UTC", false}}},
		{"a window to 24:00 ends at midnight",
			dspool.ScaleSchedule{Days: []string{"mon"}, From: "18:00", To: "24:00"},
			[]check{{"2025-03-03 17:59 UTC", false}, {"2025-03-03 18:00 UTC", true}, {"2025-03-03 23:59 UTC", true},
				{"2025-03-04 00:00 UTC", false}}},
		{"00:00 to 24:00 is the whole day",
			dspool.ScaleSchedule{Days: []string{"mon"}, From: "00:00", To: "24:00"},
			[]check{{"2025-03-02 23:59 UTC", false}, {"2025-03-03 00:00 UTC", true}, {"2025-03-03 12:00 UTC", true},
				{"2025-03-03 23:59 UTC", true}, {"2025-03-04 00:00 UTC", false}}},
		{"a window to 00:00 runs to midnight",
			dspool.ScaleSchedule{Days: []string{"mon"}, From: "20:00", To: "00:00"},
			[]check{{"2025-03-03 19:59 UTC", false}, {"2025-03-03 20:00 UTC", true}, {"2025-03-03 23:59 UTC", true},
				{"2025-03-04 00:00 UTC", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := dspool.Autoscale{Max: 2, Schedules: []dspool.ScaleSchedule{tt.schedule}}
			p := dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &a}
			if err := p.Normalize(""); err != nil {
				t.Fatal(err)
			}
			s := &a.Schedules[0]
			loc, err := time.LoadLocation(s.Timezone)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.checks {
				now := at(c.at)
				if got := s.Active(now); got != c.want {
					t.Errorf("Active(%s, %s) = %v, want %v", c.at, now.In(loc).Format("Mon 15:04 MST"), got, c.want)
				}
				// The instant decides, not the zone the time is given in.
				if got := s.Active(now.In(lisbon)); got != c.want {
					t.Errorf("Active(%s given in Lisbon time) = %v, want %v", c.at, got, c.want)
				}
			}
		})
	}
}

func FuzzPoolAutoscale(f *testing.F) {
	for _, s := range []string{
		autoscalePool(`{"max":4}`),
		autoscalePool(`{"min":1,"max":8,"idle_timeout":"30m","warm_spares":1,"scale_in_policy":"oldest","boot_timeout":"5m","wait_timeout":60,
			"rules":[{"metric":"queued_jobs","operator":">=","threshold":5,"window":"1m","action":"out","step":2,"cooldown":"2m"},
				{"metric":"cpu_percent","operator":"<","threshold":10,"action":"in"}],
			"schedules":[{"days":["weekdays","sat"],"from":"22:00","to":"06:00","timezone":"Europe/Lisbon","min":2,"max":4},
				{"days":["daily"],"from":"00:00","to":"24:00","min":0}]}`),
		autoscalePool(`{"max":2,"schedules":[{"days":["Weekends"],"from":"24:00","to":"06:00"}]}`),
		autoscalePool(`{"max":4}`, `"count":2,`),
		autoscalePool(`{"max":4}`, `"provider":"static",`),
		autoscalePool(`null`),
		autoscalePool(`{"max":3,"rules":[{"metric":"gpu_percent","operator":"<=","threshold":100,"action":"in","step":3}]}`, `"work":["batch"],`),
		`{"name":"p","node":{"cpus":1,"memory":"1GiB"},"count":3}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2025, time.March, 3, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p dspool.Pool
		if err := dspool.DecodeJSON(data, &p); err != nil {
			if dspool.ErrorCode(err) != dspool.EInvalid {
				t.Fatalf("decode error %v has code %s, want invalid", err, dspool.ErrorCode(err))
			}
			return
		}
		var again dspool.Pool
		if err := dspool.DecodeJSON(data, &again); err != nil {
			t.Fatalf("decoding the same JSON twice: %v", err)
		}
		if err := p.Normalize("pools[0]."); err != nil {
			var e *dspool.Error
			if !errors.As(err, &e) || e.Code != dspool.EInvalid || !strings.HasPrefix(e.Field, "pools[0].") {
				t.Fatalf("normalize error %v does not name a field of pools[0]", err)
			}
			return
		}
		// Normalizing a normalized pool changes nothing.
		for i := range 2 {
			if err := again.Normalize("pools[0]."); err != nil {
				t.Fatalf("normalize %d of a valid pool: %v", i+1, err)
			}
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("normalizing twice gives\n%s\nonce gives\n%s", dumpJSON(again), dumpJSON(p))
		}
		if p.Autoscale == nil {
			return
		}
		if err := checkAutoscale(&p); err != nil {
			t.Fatalf("valid pool breaks an invariant: %v\n%s", err, dumpJSON(p))
		}
		// What validation lets through, the autoscaler can decide on.
		d := autoscale.Decide(&autoscale.State{Pool: &p}, now)
		if d.Add < 0 || d.Add > d.Max || d.Min > d.Max || len(d.Remove) != 0 {
			t.Fatalf("decision for an empty pool: %+v", d)
		}
	})
}

// checkAutoscale returns what a normalized pool breaks of what the
// autoscaler relies on.
func checkAutoscale(p *dspool.Pool) error {
	a := p.Autoscale
	switch {
	case p.Provider.Name != dspool.ProviderLocal || p.Count != 0:
		return fmt.Errorf("autoscale with provider %s and count %d", p.Provider, p.Count)
	case a.Min < 0 || a.Min > a.Max || a.Max < 1 || a.Max > dspool.MaxPoolCount:
		return fmt.Errorf("bounds %d..%d", a.Min, a.Max)
	case a.WarmSpares < 0 || a.WarmSpares > a.Max:
		return fmt.Errorf("warm_spares %d", a.WarmSpares)
	case !slices.Contains([]string{dspool.ScaleInLRU, dspool.ScaleInOldest, dspool.ScaleInNewest}, a.ScaleInPolicy):
		return fmt.Errorf("scale_in_policy %q", a.ScaleInPolicy)
	case a.IdleTimeout < dspool.Duration(time.Second) || a.BootTimeout < dspool.Duration(time.Second) || a.WaitTimeout < dspool.Duration(time.Second):
		return fmt.Errorf("timeouts %v %v %v", a.IdleTimeout, a.BootTimeout, a.WaitTimeout)
	}
	for i, r := range a.Rules {
		if !slices.Contains(autoscale.Metrics[:], r.Metric) || r.Window < dspool.Duration(time.Second) || r.Step < 1 || r.Step > a.Max ||
			r.Cooldown < dspool.Duration(time.Second) || r.Threshold < 0 || r.Action != dspool.ScaleOut && r.Action != dspool.ScaleIn {
			return fmt.Errorf("rule %d: %+v", i, r)
		}
		if r.Holds(r.Threshold) != strings.Contains(r.Operator, "=") {
			return fmt.Errorf("rule %d: operator %q at its threshold", i, r.Operator)
		}
	}
	for i, s := range a.Schedules {
		if _, err := time.LoadLocation(s.Timezone); err != nil || s.Min < 0 || s.Min > a.Max || s.Max != nil && (*s.Max < s.Min || *s.Max > a.Max) {
			return fmt.Errorf("schedule %d: %+v", i, s)
		}
		for _, d := range s.Days {
			if !slices.Contains([]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, d) {
				return fmt.Errorf("schedule %d: day %q", i, d)
			}
		}
		// A valid window is open at some minute of the week.
		loc, _ := time.LoadLocation(s.Timezone)
		open := false
		for m := time.Duration(0); m < 8*24*time.Hour && !open; m += time.Minute {
			open = s.ActiveIn(time.Date(2025, time.March, 3, 0, 0, 0, 0, time.UTC).Add(m), loc)
		}
		if !open {
			return fmt.Errorf("schedule %d is never active: %+v", i, s)
		}
	}
	return nil
}

func dumpJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
