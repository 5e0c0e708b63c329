package cron_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/cron"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseRefuses(t *testing.T) {
	now := time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, expr, want string
	}{
		{"empty", " ", "is empty"},
		{"garbage", "every night", "is not a cron expression"},
		{"too many fields", "0 0 0 0 0 0 0", "is not a cron expression"},
		{"out of range", "61 * * * *", "is not a cron expression"},
		{"time zone inside", "CRON_TZ=Europe/Lisbon 0 2 * * *", "--tz"},
		{"every second", "* * * * * *", "at most one run every 2s"},
		{"two seconds in a row", "0,1 * * * * *", "1s apart"},
		{"every second as a descriptor", "@every 1s", "at most one run every 2s"},
		{"never", "0 0 30 2 *", "never fires"},
		{"too long", strings.Repeat("1,", 200) + "1 * * * *", "at most 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := cron.Parse(tc.expr, time.UTC)
			if err == nil {
				err = s.Check(now)
			}
			var e *dspool.Error
			if err == nil || !errors.As(err, &e) || e.Code != dspool.EInvalid || e.Field != "cron" || !strings.Contains(e.Message, tc.want) {
				t.Errorf("Parse(%q): got %v, want an invalid error on field cron saying %q", tc.expr, err, tc.want)
			}
		})
	}
}

func TestNextInTimeZone(t *testing.T) {
	lisbon := mustLoad(t, "Europe/Lisbon")
	for _, tc := range []struct {
		name, expr string
		loc        *time.Location
		from, want time.Time
	}{
		{"daily at 2 in Lisbon, winter (UTC+0)", "0 2 * * *", lisbon,
			time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC), time.Date(2030, 1, 11, 2, 0, 0, 0, time.UTC)},
		{"daily at 2 in Lisbon, summer (UTC+1)", "0 2 * * *", lisbon,
			time.Date(2030, 7, 10, 12, 0, 0, 0, time.UTC), time.Date(2030, 7, 11, 1, 0, 0, 0, time.UTC)},
		{"with seconds", "*/3 * * * * *", time.UTC,
			time.Date(2030, 1, 10, 12, 0, 1, 500, time.UTC), time.Date(2030, 1, 10, 12, 0, 3, 0, time.UTC)},
		{"descriptor", "@hourly", time.UTC,
			time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC), time.Date(2030, 1, 10, 13, 0, 0, 0, time.UTC)},
		{"every", "@every 90m", time.UTC,
			time.Date(2030, 1, 10, 12, 0, 0, 700, time.UTC), time.Date(2030, 1, 10, 13, 30, 0, 0, time.UTC)},
		{"day of month or of week, as crontab", "0 0 13 * 5", time.UTC,
			time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC), time.Date(2030, 1, 11, 0, 0, 0, 0, time.UTC)}, // Friday the 11th
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := cron.Parse(tc.expr, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(tc.from); !got.Equal(tc.want) {
				t.Errorf("Next(%s) = %s, want %s", tc.from, got.UTC(), tc.want)
			}
		})
	}
}

func TestDue(t *testing.T) {
	at := func(h, m, s int) time.Time { return time.Date(2030, 1, 10, h, m, s, 0, time.UTC) }
	for _, tc := range []struct {
		name, expr              string
		next, now               time.Time
		ok                      bool
		wantSlot, wantFollowing time.Time
	}{
		{"not yet", "*/5 * * * * *", at(12, 0, 5), at(12, 0, 4), false, time.Time{}, at(12, 0, 5)},
		{"on time", "*/5 * * * * *", at(12, 0, 5), at(12, 0, 5), true, at(12, 0, 5), at(12, 0, 10)},
		{"a little late", "*/5 * * * * *", at(12, 0, 5), at(12, 0, 6), true, at(12, 0, 5), at(12, 0, 10)},
		{"down across three slots: the latest runs", "*/5 * * * * *", at(12, 0, 5), at(12, 0, 17), true, at(12, 0, 15), at(12, 0, 20)},
		{"down for a day: the latest runs", "0 2 * * *", time.Date(2030, 1, 9, 2, 0, 0, 0, time.UTC), at(12, 0, 0), true,
			at(2, 0, 0), time.Date(2030, 1, 11, 2, 0, 0, 0, time.UTC)},
		{"every, down across slots", "@every 10s", at(12, 0, 10), at(12, 0, 45), true, at(12, 0, 40), at(12, 0, 50)},
		{"every, on time", "@every 10s", at(12, 0, 10), at(12, 0, 10), true, at(12, 0, 10), at(12, 0, 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := cron.Parse(tc.expr, time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			slot, following, ok := s.Due(tc.next, tc.now)
			if ok != tc.ok || !slot.Equal(tc.wantSlot) || !following.Equal(tc.wantFollowing) {
				t.Errorf("Due(%s, %s) = %s, %s, %v; want %s, %s, %v", tc.next.Format(time.TimeOnly), tc.now.Format(time.TimeOnly),
					slot, following, ok, tc.wantSlot, tc.wantFollowing, tc.ok)
			}
		})
	}
}

// TestDaylightSaving: a local time fires once where an hour repeats, and
// a local time that does not exist fires after the jump.
func TestDaylightSaving(t *testing.T) {
	lisbon := mustLoad(t, "Europe/Lisbon")
	for _, tc := range []struct {
		name, expr string
		from       time.Time
		want       []string // the next slots, in Lisbon's time
	}{
		{"daily in the repeated hour, once", "30 1 * * *", time.Date(2030, 10, 26, 12, 0, 0, 0, lisbon),
			[]string{"2030-10-27 01:30 WEST", "2030-10-28 01:30 WET"}},
		{"twice an hour in the repeated hour, once each", "0,30 1 * * *", time.Date(2030, 10, 26, 12, 0, 0, 0, lisbon),
			[]string{"2030-10-27 01:00 WEST", "2030-10-27 01:30 WEST", "2030-10-28 01:00 WET"}},
		{"every 30 minutes across the repeated hour", "*/30 * * * *", time.Date(2030, 10, 27, 0, 10, 0, 0, time.UTC), // 01:10 WEST
			[]string{"2030-10-27 01:30 WEST", "2030-10-27 02:00 WET", "2030-10-27 02:30 WET"}},
		{"a time that does not exist", "30 1 * * *", time.Date(2030, 3, 30, 12, 0, 0, 0, lisbon),
			[]string{"2030-03-31 02:30 WEST", "2030-04-01 01:30 WEST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := cron.Parse(tc.expr, lisbon)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for x := tc.from; len(got) < len(tc.want); {
				x = s.Next(x)
				got = append(got, x.In(lisbon).Format("2006-01-02 15:04 MST"))
			}
			if strings.Join(got, ", ") != strings.Join(tc.want, ", ") {
				t.Errorf("slots: %s; want %s", strings.Join(got, ", "), strings.Join(tc.want, ", "))
			}
		})
	}
}
