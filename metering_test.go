package dspool_test

import (
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Time
		err      string
	}{
		{"hours", "36h", now.Add(-36 * time.Hour), ""},
		{"days", "7d", now.Add(-7 * 24 * time.Hour), ""},
		{"half a day", "0.5d", now.Add(-12 * time.Hour), ""},
		{"rfc 3339", "2026-02-01T00:00:00Z", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), ""},
		{"future", "2026-04-01T00:00:00Z", time.Time{}, "since: 2026-04-01T00:00:00Z is in the future: give a time before now"},
		{"negative", "-1h", time.Time{}, `since: "-1h" is not a span of time or a time: use e.g. 1h, 7d or 2026-01-02T15:04:05Z`},
		{"no unit", "30", time.Time{}, `since: "30" is not a span of time or a time: use e.g. 1h, 7d or 2026-01-02T15:04:05Z`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dspool.ParseSince("since", tt.in, now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || dspool.ErrorCode(err) != dspool.EInvalid {
					t.Errorf("got %v, %v; want invalid %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseUsageBy(t *testing.T) {
	for in, want := range map[string]dspool.UsageBy{"": dspool.UsageByUser, "user": dspool.UsageByUser, "pool": dspool.UsageByPool} {
		if got, err := dspool.ParseUsageBy("--by", in); err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := dspool.ParseUsageBy("--by", "x")
	if want := `--by: "x" is not a grouping: use user or pool`; err == nil || err.Error() != want {
		t.Errorf("x: got %v, want %q", err, want)
	}
}
