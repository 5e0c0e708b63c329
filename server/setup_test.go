package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/dspooltest"
)

// TestSetupScript: a node runs its pool's setup script once before it
// takes work; a node whose script fails is marked failed with its output and
// gets no work.
func TestSetupScript(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 45000})
	ctx := context.Background()
	pools := []*dspool.Pool{
		{Name: "good", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30},
			Setup: `echo ran >> "$DSPOOL_SHARE/setup-$DSPOOL_NODE"`},
		{Name: "bad", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30},
			Setup: "echo installing; echo boom >&2; exit 3"},
	}
	if _, err := p.Admin.ApplyPools(ctx, pools); err != nil {
		t.Fatal(err)
	}
	p.AddAgent("good", agent.Config{Name: "good-1", CPUs: 1000, Memory: 1 << 30})
	p.AddAgent("bad", agent.Config{Name: "bad-1", CPUs: 1000, Memory: 1 << 30})
	p.WaitReady("good", 1)
	b, err := os.ReadFile(filepath.Join(p.Share, "setup-good-1"))
	if err != nil || string(b) != "ran\n" {
		t.Errorf("setup marker: %q, %v; want the script to have run once", b, err)
	}
	var bad *dspool.Node
	p.Eventually(10*time.Second, func() bool {
		nodes, err := p.Admin.Nodes(ctx, "bad")
		if err != nil || len(nodes) != 1 {
			return false
		}
		bad = nodes[0]
		return bad.State == dspool.NodeFailed
	}, "the node with a failing setup script to be marked failed")
	for _, want := range []string{"exit status 3", "installing", "boom"} {
		if !strings.Contains(bad.Message, want) {
			t.Errorf("failed node's message %q lacks %q", bad.Message, want)
		}
	}
	j, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{Pool: "bad", Command: []string{"true"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A pass runs at least every second: a long poll spanning several passes
	// answers with the job's state then (or early, had it run and ended).
	cur, err := p.Admin.WaitJob(ctx, j.ID, 3*time.Second)
	if err != nil || cur.State != dspool.JobQueued {
		t.Fatalf("job on the failed node's pool: %v %v, want it to stay queued", cur.State, err)
	}
}
