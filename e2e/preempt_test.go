package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// checkpointing is a batch script that counts in tenths of a second from
// its checkpoint, if any. On SIGTERM it takes 2 s (past the pool's kill
// grace of 1 s, within its preemption grace of 3 s) to write the count to
// its checkpoint, noting the grace it was given and when the signal came;
// resumed, it ends 2 s after its checkpoint.
const checkpointing = `#!/bin/sh
#DSPOOL --preemptible --pool pre --cpus 2 --memory 64MiB
ck=$DSPOOL_JOB_DIR/checkpoint
i=0
end=1000000
if [ -f "$ck" ]; then i=$(cat "$ck"); end=$((i + 20)); fi
echo "attempt $DSPOOL_ATTEMPT from $i" >> "$DSPOOL_JOB_DIR/trace"
trap 'echo "term $(date +%s.%N) grace $DSPOOL_PREEMPT_GRACE" >> "$DSPOOL_JOB_DIR/trace"; sleep 2; echo $i > "$ck"; exit 0' TERM
while [ $i -lt $end ]; do
	i=$((i + 1))
	sleep 0.1 & wait $!
done
`

// TestPreemption: with the real binary, on a pool of one node that allows
// preemption with a grace of 3 s, a preemptible job (#DSPOOL --preemptible)
// that fills the node gets SIGTERM when a job of a higher priority comes,
// writes its checkpoint in its grace, and waits in the queue again with
// reason preempted, neither failed nor retried; the higher job starts
// within the grace and 2 s of the eviction; once it has ended, the
// evicted job runs again from its checkpoint and succeeds. A pool without
// preemption refuses --preemptible, naming the field.
func TestPreemption(t *testing.T) {
	requireRoot(t)
	removeAccountAfter(t, "e2eann270")
	up := startUp(t, upConfig{UIDBase: uidBase(270)})
	_, tok := up.createUser(t, "e2eann270")
	cliOK(t, up.env(), "user", "limits", "e2eann270", "--priority", "0..100")
	ann := up.userEnv(tok)
	applyPool(t, up, "name: pre\nnode: {cpus: 2, memory: 1GiB}\ncount: 1\nwork: [batch]\npreemption: {grace: 3s}\n")
	up.waitNodes(t, "pre", 1)

	if _, errs, code := cli(t, ann, "job", "submit", "--preemptible", "--", "true"); code == 0 ||
		!strings.Contains(errs, "preemptible") || !strings.Contains(errs, "pool default does not allow preemptible jobs") {
		t.Errorf("--preemptible on a pool without preemption: exit code %d, stderr %q", code, errs)
	}

	script := writeFile(t, "ckpt-*.sh", checkpointing)
	low := submit(t, ann, "--priority", "0", script)
	dir := filepath.Join(up.Share, "jobs", itoa(low))
	trace := func() string { b, _ := os.ReadFile(filepath.Join(dir, "trace")); return string(b) }
	if j := waitState(t, ann, low, dspool.JobRunning, 30*time.Second); !j.Preemptible {
		t.Fatalf("job %d from a script with #DSPOOL --preemptible: %+v, want preemptible", low, j.Job)
	}
	eventually(t, 20*time.Second, "the preemptible job to start counting", func() bool { return strings.Contains(trace(), "attempt 1 from 0") })
	// An attempt is evicted only once it has run for the grace.
	time.Sleep(3 * time.Second)

	high := submit(t, ann, "--pool", "pre", "--cpus", "2", "--memory", "64MiB", "--priority", "100", "--", "sleep", "2")
	// Running is set when the job is placed; its start time once its
	// process runs.
	var h *api.JobDetail
	eventually(t, 20*time.Second, fmt.Sprintf("job %d to start", high), func() bool {
		h = job(t, ann, high)
		return h.StartedAt != nil
	})
	var termAt float64
	var grace string
	for _, line := range strings.Split(trace(), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "term" {
			termAt, _ = strconv.ParseFloat(f[1], 64)
			grace = f[3]
		}
	}
	if termAt == 0 || grace != "3" {
		t.Fatalf("the preemptible job's trace has no SIGTERM with DSPOOL_PREEMPT_GRACE=3:\n%s", trace())
	}
	// The checkpoint is written 2 s after SIGTERM: past the kill grace, so
	// only the preemption grace lets it be.
	ck, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if n, _ := strconv.Atoi(strings.TrimSpace(string(ck))); err != nil || n < 10 {
		t.Fatalf("checkpoint %q (%v): want the count of the 3 s it ran, at least 10 tenths of a second", ck, err)
	}
	if h.StartedAt == nil {
		t.Fatalf("the higher job runs without a start time: %+v", h.Job)
	}
	took := h.StartedAt.Sub(time.Unix(0, int64(termAt*1e9)))
	t.Logf("preemption: the higher job started %s after the eviction's SIGTERM (grace 3s)", took)
	if took > 5*time.Second {
		t.Errorf("the higher job started %s after the eviction, want at most the grace (3s) and 2s", took)
	}

	j := job(t, ann, low)
	if j.State != dspool.JobQueued || j.Reason != dspool.ReasonPreempted || j.Preemptions != 1 || j.Attempt != 2 || j.Retries != 0 {
		t.Fatalf("the evicted job: state %s reason %q, %d preemptions, attempt %d, retries %d; want queued, preempted, 1, 2, 0",
			j.State, j.Reason, j.Preemptions, j.Attempt, j.Retries)
	}
	if got := cliOK(t, ann, "job", "list", "--pool", "pre"); !strings.Contains(got, "preempted") {
		t.Errorf("job list does not say the job was preempted:\n%s", got)
	}
	if got := cliOK(t, ann, "job", "show", itoa(low)); !strings.Contains(got, "reason:     preempted") || !strings.Contains(got, "preempted 1 time") {
		t.Errorf("job show of the evicted job:\n%s", got)
	}
	var q dspool.Queue
	cliJSON(t, ann, &q, "queue", "--pool", "pre")
	if len(q.Jobs) != 1 || q.Jobs[0].ID != low || q.Jobs[0].Reason != dspool.WaitPreempted || !q.Jobs[0].SubmittedAt.Equal(j.SubmittedAt) {
		t.Errorf("queue of pool pre: %+v; want the evicted job, reason preempted, submitted at %s", q.Jobs, j.SubmittedAt)
	}

	// Once the higher job has ended, the evicted one resumes from its
	// checkpoint and ends well.
	waitState(t, ann, high, dspool.JobSucceeded, 20*time.Second)
	j = waitState(t, ann, low, dspool.JobSucceeded, 30*time.Second)
	if !strings.Contains(trace(), "attempt 2 from "+strings.TrimSpace(string(ck))) {
		t.Errorf("the second attempt did not resume from checkpoint %s:\n%s", ck, trace())
	}
	if j.Attempt != 2 || j.Preemptions != 1 || len(j.Attempts) != 2 || j.Attempts[0].Reason != dspool.ReasonPreempted {
		t.Errorf("the evicted job at its end: attempt %d, %d preemptions, attempts %+v; want 2, 1, the first preempted", j.Attempt, j.Preemptions, j.Attempts)
	}
}
