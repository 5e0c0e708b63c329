package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
)

func logOf(t *testing.T, p *dspooltest.Pool, j *dspool.Job) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Share, "jobs", strconv.FormatInt(j.ID, 10), "attempt-"+strconv.Itoa(j.Attempt)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func run(t *testing.T, p *dspooltest.Pool, spec dspool.JobSpec) *dspool.Job {
	t.Helper()
	j, err := p.Admin.SubmitJob(context.Background(), &spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p.Wait(p.Admin, j.ID)
}

func TestOutputIsCapped(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 44000})
	pool, err := p.DB.Pool(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	pool.OutputLimit = 64 << 10
	if _, err := p.Admin.ApplyPools(context.Background(), []*dspool.Pool{pool}); err != nil {
		t.Fatal(err)
	}
	// 10 MiB of output against a 64 KiB cap: the job still succeeds, the log
	// stays small and says it was cut.
	j := run(t, p, dspool.JobSpec{Command: []string{"sh", "-c", "head -c 10485760 /dev/zero | tr '\\0' x; echo; echo done >&2"}})
	if j.State != dspool.JobSucceeded {
		t.Fatalf("got %s (%s), want succeeded", j.State, j.Message)
	}
	out := logOf(t, p, j)
	if len(out) > 70<<10 || !strings.Contains(out, "output truncated") {
		t.Errorf("log is %d bytes (truncation notice: %v), want at most ~64KiB with a notice", len(out), strings.Contains(out, "output truncated"))
	}
}

func TestArgvIsNotShellInterpreted(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 44100})
	arg := "a; echo injected $(id) `x`\nnext"
	j := run(t, p, dspool.JobSpec{Command: []string{"printf", "%s", arg}})
	if got := logOf(t, p, j); got != arg {
		t.Errorf("job printed %q, want the argument unchanged %q", got, arg)
	}
}

func TestMemoryLimitKillsJob(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root")
	}
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 44200})
	// python3 allocating 512 MiB under a 64 MiB limit is OOM-killed.
	j := run(t, p, dspool.JobSpec{Memory: 64 << 20, Command: []string{"python3", "-c", "x = bytearray(512 << 20); print('survived')"}})
	if j.State != dspool.JobFailed || j.Reason != dspool.ReasonExit {
		t.Fatalf("got %s reason %q, want failed exit", j.State, j.Reason)
	}
	if strings.Contains(logOf(t, p, j), "survived") {
		t.Error("the job outlived its memory limit")
	}
	if !strings.Contains(j.Message, "memory limit") {
		t.Errorf("message %q does not say the memory limit killed it", j.Message)
	}
}

func TestRunsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running jobs as their users needs root")
	}
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 44300})
	j := run(t, p, dspool.JobSpec{Command: []string{"sh", "-c", "id -u; id -g; echo $HOME; cat /proc/self/status | grep NoNewPrivs"}})
	lines := strings.Fields(logOf(t, p, j))
	want := []string{"44300", "44300", filepath.Join(p.Share, "home", "admin44300"), "NoNewPrivs:", "1"}
	if strings.Join(lines, " ") != strings.Join(want, " ") {
		t.Errorf("job saw %q, want %q", lines, want)
	}
	st, err := os.Stat(filepath.Join(p.Share, "home", "admin44300"))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("home: %v %v, want mode 0700", st, err)
	}
}
