package cli_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/store"
)

// TestListPages: every list that grows without bound prints a JSON array,
// and says on standard error when there is more and the command that shows
// it; that command shows the rest.
func TestListPages(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	for range 3 {
		if _, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}}, 0); err != nil {
			t.Fatal(err)
		}
		if err := p.DB.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: dspool.DefaultPool, Kind: dspool.EventWaiting, Message: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := p.DB.Audit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 - len(es) {
		if err := p.DB.AddAudit(ctx, dspool.AuditEntry{Actor: "ada", Action: dspool.AuditLoginSSH, Outcome: dspool.AuditFailure}); err != nil {
			t.Fatal(err)
		}
	}
	note := regexp.MustCompile(`^\(more (\w+): dspool (.*)\)\n$`)
	for _, tt := range []struct {
		name  string
		args  []string
		first int
		rest  int
	}{
		{"jobs", []string{"job", "list", "--limit", "2", "--state", "queued,running"}, 2, 1},
		{"events", []string{"pool", "events", dspool.DefaultPool, "--limit", "2"}, 2, 1},
		{"audit", []string{"audit", "--limit", "2", "--since", "0"}, 2, 1}, // the note gives flags in order
		{"sessions", []string{"session", "list", "--ended", "--limit", "1"}, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := run(t, p, p.Admin, append(tt.args, "-o", "json")...)
			var page []map[string]any
			if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page) != tt.first {
				t.Fatalf("%s -o json: exit %d, %q %q; want an array of %d", strings.Join(tt.args, " "), code, out, errs, tt.first)
			}
			m := note.FindStringSubmatch(errs)
			if tt.rest == 0 {
				if m != nil {
					t.Errorf("stderr %q: a note of more on the last page", errs)
				}
				return
			}
			if m == nil {
				t.Fatalf("stderr %q; want a note of more %s", errs, tt.name)
			}
			if !strings.HasPrefix(m[2], strings.Join(tt.args, " ")+" --before ") {
				t.Errorf("the note says %q; want the same command with --before", m[2])
			}
			out, errs, code = run(t, p, p.Admin, append(strings.Fields(m[2]), "-o", "json")...)
			if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page) != tt.rest || errs != "" {
				t.Errorf("the next page: exit %d, %q %q; want %d and no note", code, out, errs, tt.rest)
			}
		})
	}
}
