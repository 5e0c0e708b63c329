package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
)

// metric reads a counter or gauge without labels from /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	code, body := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics %s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

// TestHeartbeatErrorsKeepTheConnection: heartbeats the store cannot record
// (its disk full, beyond its reserve) are answered with an error, and the
// agent sends them again over the same connection, rather than dropping it
// (and every session it carries); once there is room the report commits.
func TestHeartbeatErrorsKeepTheConnection(t *testing.T) {
	dir := smallFileSystem(t, "24m")
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 49650, Dir: dir, Reserve: 4096})
	ctx := context.Background()
	gate := t.TempDir()
	_ = os.Chmod(gate, 0o755)
	j := submit(t, p.Admin, dspool.JobSpec{Command: []string{"sh", "-c", "while [ ! -e " + gate + "/go ]; do sleep 0.05; done"}})
	p.Eventually(20*time.Second, func() bool {
		got, err := p.Admin.Job(ctx, j.ID)
		return err == nil && got.Job.State == dspool.JobRunning && got.Job.StartedAt != nil
	}, "job %d to run", j.ID)
	connects := metric(t, p.URL, "dspool_agent_connections_total")

	filler := filepath.Join(dir, "fill")
	fill(t, filler)
	// The job's end is a write: its heartbeat fails until there is room.
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.Eventually(20*time.Second, func() bool { return metric(t, p.URL, "dspool_heartbeat_errors_total") >= 3 },
		"heartbeats to fail on the full disk")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if got := p.Wait(p.Admin, j.ID); got.State != dspool.JobSucceeded {
		t.Errorf("the job whose end was reported on a full disk: %s (%s), want succeeded", got.State, got.Message)
	}
	if n := metric(t, p.URL, "dspool_agent_connections_total") - connects; n != 0 {
		t.Errorf("the agent connected %v more times through the failed heartbeats, want 0: it keeps its connection", n)
	}
}
