package cli

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/yamljson"
	"github.com/spf13/cobra"
)

func TestRetentionFromConfigAndFlags(t *testing.T) {
	js, err := yamljson.Convert([]byte("data: /d\nretention:\n  jobs: 30d\n  audit: 365d\n  audit_export: /var/log/audit.jsonl\n"), yamljson.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var o planeOptions
	if err := dspool.DecodeJSON(js, &o); err != nil {
		t.Fatal(err)
	}
	var f retentionFlags
	c := &cobra.Command{Use: "server", RunE: func(*cobra.Command, []string) error { return nil }}
	f.add(c)
	c.SetArgs([]string{"--retention", "never"})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	f.apply(c, &o.Retention)
	want := dspool.Retention{Jobs: dspool.KeepForever, Sessions: dspool.KeepForever, Events: dspool.KeepForever,
		Audit: dspool.Age(365 * 24 * time.Hour), AuditExport: "/var/log/audit.jsonl"}
	if o.Retention != want {
		t.Errorf("got %+v, want %+v: the flag over the config, the rest from it", o.Retention, want)
	}
	c.SetArgs([]string{"--retention", "10m"})
	c.SilenceErrors, c.SilenceUsage = true, true
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "under 1h") {
		t.Errorf("--retention 10m: %v; want a refusal", err)
	}
}

func TestCheckRetention(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	year := dspool.Age(365 * 24 * time.Hour)
	for _, tt := range []struct {
		name string
		r    dspool.Retention
		err  string
	}{
		{"the defaults", dspool.Retention{}, ""},
		{"an export", dspool.Retention{Audit: year, AuditExport: filepath.Join(dir, "audit.jsonl")}, ""},
		{"an export of what is kept", dspool.Retention{AuditExport: filepath.Join(dir, "audit.jsonl")}, "give the audit retention an age too"},
		{"a relative export", dspool.Retention{Audit: year, AuditExport: "audit.jsonl"}, "not an absolute path"},
		{"an export nowhere", dspool.Retention{Audit: year, AuditExport: filepath.Join(dir, "no", "audit.jsonl")}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkRetention(tt.r, log)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "audit_export")) {
				t.Errorf("got %v, want %q", err, tt.err)
			}
		})
	}
}
