package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/server"
	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIMatchesRoutes fails when a route and the OpenAPI document
// disagree, in either direction.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(server.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	routes := server.New(server.Config{}).Routes()
	sort.Strings(documented)
	sort.Strings(routes)
	if strings.Join(documented, "\n") != strings.Join(routes, "\n") {
		t.Errorf("routes and openapi.json disagree:\nroutes:\n%s\n\ndocumented:\n%s", strings.Join(routes, "\n"), strings.Join(documented, "\n"))
	}
}

func submit(t *testing.T, c *api.Client, spec dspool.JobSpec) *dspool.Job {
	t.Helper()
	j, err := c.SubmitJob(context.Background(), &spec, 0)
	if err != nil {
		t.Fatalf("submit %v: %v", spec.Command, err)
	}
	return j
}

func TestJobRunsWithGPUs(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, NodeGPUs: 2, UIDBase: 41000})
	j := submit(t, p.Admin, dspool.JobSpec{GPUs: 1, Command: []string{"sh", "-c", `echo "gpus=$CUDA_VISIBLE_DEVICES"`}})
	j = p.Wait(p.Admin, j.ID)
	if j.State != dspool.JobSucceeded || j.ExitCode == nil || *j.ExitCode != 0 {
		t.Fatalf("got %s exit %v (%s), want succeeded", j.State, j.ExitCode, j.Message)
	}
	out, err := os.ReadFile(filepath.Join(p.Share, "jobs", strconv.FormatInt(j.ID, 10), "attempt-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "gpus=0" {
		t.Errorf("job saw %q, want gpus=0", got)
	}
	if len(j.GPUIndices) != 1 || j.GPUIndices[0] != 0 {
		t.Errorf("gpu_indices = %v, want [0]", j.GPUIndices)
	}
}

func TestIdempotencyKey(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	spec := dspool.JobSpec{Command: []string{"true"}, IdempotencyKey: "k-1"}
	a := submit(t, p.Admin, spec)
	b := submit(t, p.Admin, spec)
	if a.ID != b.ID {
		t.Errorf("same key gave jobs %d and %d, want one job", a.ID, b.ID)
	}
	l, err := p.Admin.Jobs(context.Background(), api.JobQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Jobs) != 1 {
		t.Errorf("got %d jobs stored, want 1", len(l.Jobs))
	}
}

func TestOtherUsersJobIsNotFound(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	bob, err := p.DB.CreateUser(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	bc := p.ClientFor(bob)
	j := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	if _, err := bc.Job(ctx, j.ID); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("bob reading admin's job: got %v, want not_found", err)
	}
	if _, err := bc.CancelJob(ctx, j.ID); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("bob cancelling admin's job: got %v, want not_found", err)
	}
	if _, err := bc.Logs(ctx, j.ID, 0, false); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("bob reading admin's logs: got %v, want not_found", err)
	}
	if _, err := bc.Jobs(ctx, api.JobQuery{AllUsers: true}); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Errorf("bob listing all jobs: got %v, want forbidden", err)
	}
	if _, err := bc.ApplyPools(ctx, []*dspool.Pool{{Name: "x", Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}}); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Errorf("bob applying pools: got %v, want forbidden", err)
	}
	mine := submit(t, bc, dspool.JobSpec{Command: []string{"true"}})
	l, err := bc.Jobs(ctx, api.JobQuery{})
	if err != nil || len(l.Jobs) != 1 || l.Jobs[0].ID != mine.ID {
		t.Errorf("bob's list: got %v %v, want only job %d", l, err, mine.ID)
	}
	anon := &api.Client{Server: p.URL}
	if _, err := anon.Jobs(ctx, api.JobQuery{}); dspool.ErrorCode(err) != dspool.EUnauthorized {
		t.Errorf("anonymous list: got %v, want unauthorized", err)
	}
}

// TestPartitionedNodeIsFenced: a node that goes silent has its attempt
// marked node_lost and retried elsewhere; when it comes back, the stale
// copy is killed, so the job never runs twice at once for long.
func TestPartitionedNodeIsFenced(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 0, NodeGrace: time.Second, UIDBase: 42000})
	ctx := context.Background()
	a := p.AddAgent("default", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.WaitReady("default", 1)
	marker := "dspool-fence-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	j := submit(t, p.Admin, dspool.JobSpec{Retries: 1, Command: []string{"bash", "-c", "exec -a " + marker + " sleep 60"}})
	p.Eventually(10*time.Second, func() bool { return countProcs(marker) == 1 }, "the first attempt to run")

	a.Link.Cut()
	p.Eventually(10*time.Second, func() bool {
		cur, err := p.Admin.Job(ctx, j.ID)
		return err == nil && cur.Attempt == 2 && cur.State == dspool.JobQueued
	}, "attempt 1 to be marked node_lost and the job requeued")
	detail, _ := p.Admin.Job(ctx, j.ID)
	if r := detail.Attempts[0].Reason; r != dspool.ReasonNodeLost {
		t.Errorf("attempt 1 reason = %q, want node_lost", r)
	}

	p.AddAgent("default", agent.Config{CPUs: 2000, Memory: 2 << 30})
	p.Eventually(10*time.Second, func() bool {
		cur, err := p.Admin.Job(ctx, j.ID)
		return err == nil && cur.State == dspool.JobRunning && cur.StartedAt != nil && cur.Node != a.Node()
	}, "attempt 2 to run on the new node")

	a.Link.Restore()
	p.Eventually(10*time.Second, func() bool { return countProcs(marker) == 1 }, "the stale attempt on the returning node to be killed")
	cur, _ := p.Admin.Job(ctx, j.ID)
	if cur.Attempt != 2 || cur.State != dspool.JobRunning {
		t.Errorf("after the stale node returned: job is %s at attempt %d, want running at attempt 2", cur.State, cur.Attempt)
	}
	if _, err := p.Admin.CancelJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if got := p.Wait(p.Admin, j.ID); got.State != dspool.JobCancelled {
		t.Errorf("after cancel: %s, want cancelled", got.State)
	}
	p.Eventually(10*time.Second, func() bool { return countProcs(marker) == 0 }, "no copy to be left running")
}

// countProcs counts processes whose argv[0] is name.
func countProcs(name string) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if arg0, _, _ := strings.Cut(string(b), "\x00"); arg0 == name {
			n++
		}
	}
	return n
}

func TestMetrics(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 43000})
	j := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	p.Wait(p.Admin, j.ID)
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`dspool_queue_length 0`, `dspool_jobs{state="succeeded"} 1`, `dspool_nodes{state="ready"} 1`, `dspool_scheduling_seconds_count 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
