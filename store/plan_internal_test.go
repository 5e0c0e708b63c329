package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestNodeLookupsUseIndexes: looking a node up (by id or name, as every
// heartbeat does, and by credential, as every agent connection does) reads
// no whole table: with a thousand nodes, a scan per heartbeat took a
// control plane's cpu.
func TestNodeLookupsUseIndexes(t *testing.T) {
	SkipOnPostgres(t, "the plans of SQLite's query planner")
	ctx := context.Background()
	db, err := OpenAt(t, filepath.Join(t.TempDir(), "dspool.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct{ name, query string }{
		{"Node", nodeByIDOrName},
		{"NodeByCredential", nodeByCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tc.query, "x", "x", "x")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN ") {
					t.Errorf("the query reads a whole table (%s); its plan: %s", step, strings.Join(plan, "; "))
				}
			}
		})
	}
}

// TestScheduleLoopUsesIndexes: what the loop that fires schedules reads
// each second, and the runs of a schedule that it reads at each slot, read
// no whole table.
func TestScheduleLoopUsesIndexes(t *testing.T) {
	SkipOnPostgres(t, "the plans of SQLite's query planner")
	db, err := OpenAt(t, filepath.Join(t.TempDir(), "dspool.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, args, err := listQuery(JobFilter{User: "ada", Schedule: "nightly", States: []dspool.JobState{dspool.JobQueued, dspool.JobRunning}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query string
		args        []any
		index       string
	}{
		{"DueSchedules", dueSchedules, []any{1}, "schedules_next"},
		{"NextSlot", nextSlot, nil, "schedules_next"},
		{"ActiveRuns", runs, args, "jobs_schedule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := strings.Join(queryPlan(t, db, tc.query, tc.args...), "; ")
			if strings.HasPrefix(plan, "SCAN ") || strings.Contains(plan, "; SCAN ") || !strings.Contains(plan, "INDEX "+tc.index+" ") {
				t.Errorf("the query's plan: %s; want it to find its rows by the index %s", plan, tc.index)
			}
		})
	}
}

func queryPlan(t *testing.T, db *DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// BenchmarkNode looks a node up by id among 1,000, as a heartbeat does.
func BenchmarkNode(b *testing.B) {
	ctx := context.Background()
	db, err := OpenAt(b, filepath.Join(b.TempDir(), "dspool.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := range 1000 {
		n := &dspool.Node{ID: fmt.Sprintf("n-%04d", i), Name: fmt.Sprintf("node-%04d", i), Pool: "p", State: dspool.NodeReady,
			Inventory: dspool.Inventory{CPUs: 1000, Memory: 1 << 30}, CreatedAt: time.Now()}
		if err := db.CreateNode(ctx, n, []byte(n.ID)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := db.Node(ctx, fmt.Sprintf("n-%04d", i%1000)); err != nil {
			b.Fatal(err)
		}
	}
}
