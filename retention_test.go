package dspool_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func TestParseAge(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     dspool.Age
		err      string
	}{
		{"days", "90d", dspool.Age(90 * 24 * time.Hour), ""},
		{"hours", "36h", dspool.Age(36 * time.Hour), ""},
		{"a part of a day", "1.5d", dspool.Age(36 * time.Hour), ""},
		{"never", "never", dspool.KeepForever, ""},
		{"zero keeps everything", "0", dspool.KeepForever, ""},
		{"no unit", "90", 0, `"90" is not an age`},
		{"too short", "10m", 0, "under 1h0m0s"},
		{"negative", "-5d", 0, "is not an age"},
		{"empty", "", 0, "is empty"},
		{"past a century", "900000h", 0, "over 100 years"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dspool.ParseAge("--retention", tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "--retention") {
					t.Fatalf("ParseAge(%q) = %v, %v; want an error naming --retention with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseAge(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestRetentionConfig(t *testing.T) {
	var r dspool.Retention
	if err := json.Unmarshal([]byte(`{"jobs": "30d", "sessions": 0, "audit": "never", "audit_export": "/var/log/audit.jsonl"}`), &r); err != nil {
		t.Fatal(err)
	}
	r = r.WithDefaults()
	want := dspool.Retention{Jobs: dspool.Age(30 * 24 * time.Hour), Sessions: dspool.KeepForever, Events: dspool.DefaultJobAge,
		Audit: dspool.KeepForever, AuditExport: "/var/log/audit.jsonl"}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	for _, bad := range []string{`{"jobs": 90}`, `{"jobs": "soon"}`, `{"events": "5m"}`} {
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if b, _ := json.Marshal(want); string(b) != `{"jobs":"30d","sessions":"never","events":"90d","audit":"never","audit_export":"/var/log/audit.jsonl"}` {
		t.Errorf("marshalled: %s", b)
	}
}
