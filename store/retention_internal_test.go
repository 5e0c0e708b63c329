package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrunesUseIndexes: each prune finds its oldest rows by an index, in
// the order it wants them, so a batch costs the same in a store of any
// size (no full scan, no sort of everything that is old).
func TestPrunesUseIndexes(t *testing.T) {
	SkipOnPostgres(t, "the plans of SQLite's query planner")
	ctx := context.Background()
	db, err := OpenAt(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tt := range []struct{ query, index string }{
		{oldJobs, "jobs_finished"},
		{oldSessions, "sessions_ended"},
		{oldEvents, "pool_events_at"},
		{oldAudit, "audit_at"},
	} {
		rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tt.query, 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		got := strings.Join(plan, "; ")
		if !strings.Contains(got, "USING INDEX "+tt.index) && !strings.Contains(got, "USING COVERING INDEX "+tt.index) || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("%s\nplan: %s\nwant it by %s, without sorting", tt.query, got, tt.index)
		}
	}
}
