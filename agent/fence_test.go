package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
)

// markerJob is a job that writes "start N" to file, then "tick N" every
// 50 ms from a child process until it is killed (N: its attempt).
func markerJob(file string) []string {
	return []string{"sh", "-c", `echo "start $DSPOOL_ATTEMPT" >> ` + file +
		`; (while :; do echo "tick $DSPOOL_ATTEMPT" >> ` + file + `; sleep 0.05; done) & wait`}
}

// overlap returns the lines of attempt 1 written after attempt 2 started.
func overlap(file string) []string {
	b, _ := os.ReadFile(file)
	var late []string
	second := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "start 2":
			second = true
		case second && strings.HasSuffix(line, " 1"):
			late = append(late, line)
		}
	}
	return late
}

// TestCutOffAgentStopsItsAttempts: an agent cut off from the control plane
// stops its attempts itself once the node grace has passed, before the
// server retries them elsewhere, so no process of the attempt runs beside
// its retry.
func TestCutOffAgentStopsItsAttempts(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 2, NodeGrace: 2 * time.Second, UIDBase: 44400})
	ctx := context.Background()
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o777)
	file := filepath.Join(dir, "markers")
	j, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{Command: markerJob(file), Retries: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Eventually(20*time.Second, func() bool {
		b, _ := os.ReadFile(file)
		return strings.Contains(string(b), "tick 1")
	}, "attempt 1 to run")
	got, err := p.Admin.Job(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var cut *dspooltest.Agent
	for _, a := range p.Agents() {
		if a.Node() == got.Job.Node {
			cut = a
		}
	}
	cut.Link.Cut()
	defer cut.Link.Restore()
	p.Eventually(30*time.Second, func() bool {
		b, _ := os.ReadFile(file)
		return strings.Count(string(b), "tick 2") >= 10
	}, "attempt 2 to run on the other node")
	if late := overlap(file); len(late) > 0 {
		t.Errorf("attempt 1 wrote %d lines after attempt 2 started (%q...): it ran beside its retry", len(late), late[0])
	}
	if _, err := p.Admin.CancelJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
}
