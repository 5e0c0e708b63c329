package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

// walk reads a list page by page, and returns each page's keys.
func walk(t *testing.T, page func(before int64) ([]int64, int64, error)) [][]int64 {
	t.Helper()
	var pages [][]int64
	var before int64
	for range 10 {
		keys, next, err := page(before)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, keys)
		if next == 0 {
			return pages
		}
		before = next
	}
	t.Fatalf("pages never end: %v", pages)
	return nil
}

func TestPages(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []int64
	for i := range 5 {
		spec := dspool.JobSpec{Command: []string{"true"}}
		_ = spec.Normalize()
		j, _, err := db.SubmitJob(ctx, u.ID, &spec)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j.ID)
		at := time.Now()
		if err := db.CreateSession(ctx, &dspool.Session{ID: fmt.Sprintf("s-%d", 9-i), User: "ada", Kind: "ssh", Pool: "p", Node: "n", State: "active", StartedAt: at, LastActivity: at}); err != nil {
			t.Fatal(err)
		}
		if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "p", Kind: "waiting", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if err := db.AddAudit(ctx, dspool.AuditEntry{Actor: "ada", Action: dspool.AuditLoginSSH, Outcome: dspool.AuditSuccess, Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{2, 5, 7} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			jobPages := walk(t, func(before int64) ([]int64, int64, error) {
				p, err := db.JobPage(ctx, store.JobFilter{Limit: limit, Before: before})
				var ids []int64
				for _, j := range p.Items {
					ids = append(ids, j.ID)
				}
				return ids, p.Next, err
			})
			sessionPages := walk(t, func(before int64) ([]int64, int64, error) {
				p, err := db.SessionPage(ctx, store.SessionFilter{Limit: limit, Before: before})
				var ids []int64
				for _, s := range p.Items {
					var n int64
					fmt.Sscanf(s.ID, "s-%d", &n)
					ids = append(ids, n)
				}
				return ids, p.Next, err
			})
			eventPages := walk(t, func(before int64) ([]int64, int64, error) {
				p, err := db.PoolEventPage(ctx, "p", time.Time{}, before, limit)
				var ids []int64
				for _, e := range p.Items {
					ids = append(ids, e.ID)
				}
				return ids, p.Next, err
			})
			auditPages := walk(t, func(before int64) ([]int64, int64, error) {
				p, err := db.AuditPage(ctx, store.AuditFilter{Limit: limit, Before: before})
				var ids []int64
				for _, e := range p.Items {
					ids = append(ids, e.ID)
				}
				return ids, p.Next, err
			})
			// Five of each: pages of the limit, the last one short or
			// full, never an empty one after it.
			want := (5 + limit - 1) / limit
			for what, pages := range map[string][][]int64{"jobs": jobPages, "sessions": sessionPages, "events": eventPages, "audit": auditPages} {
				if len(pages) != want {
					t.Errorf("%s: %d pages %v, want %d", what, len(pages), pages, want)
				}
			}
			// Jobs and sessions newest first across pages; events and the
			// audit log oldest first within a page, each page older than
			// the one before.
			if got := slices.Concat(jobPages...); !slices.Equal(got, []int64{jobs[4], jobs[3], jobs[2], jobs[1], jobs[0]}) {
				t.Errorf("jobs: %v", jobPages)
			}
			if got := slices.Concat(sessionPages...); !slices.Equal(got, []int64{5, 6, 7, 8, 9}) {
				t.Errorf("sessions: %v, want s-5 (the newest) to s-9", sessionPages)
			}
			for what, pages := range map[string][][]int64{"events": eventPages, "audit": auditPages} {
				slices.Reverse(pages)
				all := slices.Concat(pages...)
				if len(all) != 5 || !slices.IsSorted(all) {
					t.Errorf("%s: pages %v, want each page older than the one before, oldest first within", what, pages)
				}
			}
		})
	}
}
