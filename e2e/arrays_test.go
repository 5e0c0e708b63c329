package e2e_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// tasks returns every task of array id, by index.
func tasks(t *testing.T, env []string, id int64) map[int]*dspool.Job {
	t.Helper()
	var l []*dspool.Job
	cliJSON(t, env, &l, "job", "list", "--array", itoa(id), "--limit", "10000")
	out := map[int]*dspool.Job{}
	for _, j := range l {
		if j.ArrayID != id || j.ArrayIndex == nil {
			t.Fatalf("job %d in the list of array %d: array %d", j.ID, id, j.ArrayID)
		}
		out[*j.ArrayIndex] = j
	}
	return out
}

// maxOverlap is the most of the intervals [started, finished] that hold at
// once.
func maxOverlap(js map[int]*dspool.Job) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var es []edge
	for _, j := range js {
		if j.StartedAt != nil && j.FinishedAt != nil {
			es = append(es, edge{*j.StartedAt, 1}, edge{*j.FinishedAt, -1})
		}
	}
	sort.Slice(es, func(a, b int) bool {
		if es[a].at.Equal(es[b].at) {
			return es[a].delta < es[b].delta // an end before a start at the same instant
		}
		return es[a].at.Before(es[b].at)
	})
	n, most := 0, 0
	for _, e := range es {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// TestJobArrays: an array of 1,000 tasks with a cap of 20 runs every task
// once, never more than 20 at once (by the tasks' own start and end times
// and by what the server reports while it runs), and lists as one line; a
// sweep's rows reach their tasks; waiting on an array exits 0 only if every
// task succeeded; cancelling an array cancels what has not ended, and a
// rerun of its failed tasks runs them alone, each with its own variables.
func TestJobArrays(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(195), Nodes: 2})
	_, tok := up.createUser(t, "e2earray195")
	env := up.userEnv(tok)

	const n, capped = 1000, 20
	var a dspool.Job
	submitted(t, env, &a, "--array", "0-999%20", "--cpus", "0.01", "--memory", "16MiB", "--",
		"sh", "-c", `sleep 0.05; echo "$DSPOOL_ARRAY_ID $DSPOOL_ARRAY_INDEX"`)
	if a.Array == nil || a.Array.Tasks != n || a.Array.MaxRunning != capped || a.ArrayID != a.ID {
		t.Fatalf("submitted array: %+v %+v", a, a.Array)
	}
	most := 0
	eventually(t, 5*time.Minute, "every task of the array to end", func() bool {
		var l []*dspool.Job
		cliJSON(t, env, &l, "job", "list")
		if len(l) != 1 || l[0].Array == nil {
			t.Fatalf("job list shows %d lines for one array (want 1, with its counts)", len(l))
		}
		most = max(most, l[0].Array.Counts[dspool.JobRunning])
		return l[0].Array.Done()
	})
	if most > capped {
		t.Errorf("the server reported %d tasks running at once: the cap is %d", most, capped)
	}
	all := tasks(t, env, a.ID)
	if len(all) != n {
		t.Fatalf("%d tasks listed, want %d", len(all), n)
	}
	for i, j := range all {
		if j.State != dspool.JobSucceeded || j.Attempt != 1 {
			t.Fatalf("task %d: %s at attempt %d", i, j.State, j.Attempt)
		}
	}
	if got := maxOverlap(all); got > capped || got < 2 {
		t.Errorf("at most %d tasks ran at once by their start and end times; want 2 to %d", got, capped)
	}
	if out := cliOK(t, env, "job", "logs", itoa(a.ID)+"_637"); out != itoa(a.ID)+" 637\n" {
		t.Errorf("task 637's log: %q", out)
	}
	if _, errs, code := cli(t, env, "job", "logs", itoa(a.ID)); code == 0 || !strings.Contains(errs, "is an array of 1000 tasks") {
		t.Errorf("logs of a whole array: exit %d, %q; want a refusal that names a task", code, errs)
	}
	// A task that is not there: of the array, where its tasks are; of a
	// plain job, that it is none; of nothing, not found.
	for ref, want := range map[string]string{
		itoa(a.ID) + "_1000": "see the array's tasks with `dspool job list --array " + itoa(a.ID) + "`",
		itoa(a.ID+1) + "_0":  "job " + itoa(a.ID+1) + " is not an array",
		"999999_1":           "job 999999_1 not found",
	} {
		if _, errs, code := cli(t, env, "job", "show", ref); code == 0 || !strings.Contains(errs, want) {
			t.Errorf("job show %s: exit %d, %q; want %q", ref, code, errs, want)
		}
	}

	// A sweep: each row's values in its task's environment; one task fails.
	csv := writeFile(t, "sweep*.csv", "LR,NAME\n0.1,\"a b\"\n0.01,fail\n0.001,c\n")
	_, errs, code := cli(t, env, "job", "submit", "--wait", "--sweep", csv, "--cpus", "0.1", "--memory", "16MiB", "--",
		"sh", "-c", `echo "$LR $NAME"; test "$NAME" != fail`)
	if code != 1 || !strings.Contains(errs, "2 succeeded, 1 failed") {
		t.Fatalf("submit --wait of a sweep with a failing row: exit %d, stderr %q", code, errs)
	}
	sweep := int64(0)
	for _, w := range strings.Fields(errs) {
		if id, err := parseInt(w); err == nil && sweep == 0 {
			sweep = id
		}
	}
	for i, want := range []string{"0.1 a b\n", "0.01 fail\n", "0.001 c\n"} {
		if out := cliOK(t, env, "job", "logs", itoa(sweep)+"_"+itoa(int64(i))); out != want {
			t.Errorf("sweep task %d: %q, want %q", i, out, want)
		}
	}
	// A rerun of its failed tasks runs the failed row alone, with its own
	// values.
	var re dspool.Job
	cliJSON(t, env, &re, "job", "rerun", "--failed", itoa(sweep))
	if re.Array == nil || re.Array.Tasks != 1 || re.Array.Indices != "1" {
		t.Fatalf("rerun --failed: %+v", re.Array)
	}
	if _, _, code := cli(t, env, "job", "wait", itoa(re.ID)); code != 1 {
		t.Errorf("waiting on the rerun (its row fails again): exit %d, want 1", code)
	}
	if out := cliOK(t, env, "job", "logs", itoa(re.ID)+"_1"); out != "0.01 fail\n" {
		t.Errorf("the rerun task's output: %q", out)
	}

	// Cancelling an array: running tasks stop, queued ones never run.
	var c dspool.Job
	submitted(t, env, &c, "--array", "0-9%2", "--cpus", "0.1", "--memory", "16MiB", "--", "sleep", "300")
	eventually(t, time.Minute, "two tasks running", func() bool {
		return tasks(t, env, c.ID)[0].State == dspool.JobRunning
	})
	var cancelled []dspool.Job
	cliJSON(t, env, &cancelled, "job", "cancel", itoa(c.ID))
	if len(cancelled) != 1 || cancelled[0].Array == nil || cancelled[0].Array.Counts[dspool.JobCancelled] != 8 {
		t.Errorf("job cancel of an array: %+v, want the array with its 8 queued tasks cancelled", cancelled)
	}
	eventually(t, time.Minute, "the cancelled array to end", func() bool {
		var j dspool.Job
		cliJSON(t, env, &j, "job", "show", itoa(c.ID))
		return j.Array != nil && j.Array.Done()
	})
	for i, j := range tasks(t, env, c.ID) {
		if j.State != dspool.JobCancelled || i >= 2 && j.StartedAt != nil {
			t.Errorf("task %d of the cancelled array: %s, started %v", i, j.State, j.StartedAt)
		}
	}
}

// submitted submits with args and decodes what job submit -o json printed.
func submitted(t *testing.T, env []string, j *dspool.Job, args ...string) {
	t.Helper()
	out := cliOK(t, env, append([]string{"job", "submit", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), j); err != nil {
		t.Fatalf("job submit %s: %v\noutput: %s", strings.Join(args, " "), err, out)
	}
}

func parseInt(s string) (int64, error) {
	var n int64
	err := json.Unmarshal([]byte(strings.TrimRight(s, ":")), &n)
	return n, err
}

// TestJobDependencies: a diamond runs in order; a job whose parent failed
// ends with reason dependency, saying which; a held job waits until
// released; an unknown or foreign job is refused at submit; a job submitted
// from a directory in the user's home on the share runs there.
func TestJobDependencies(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(196), Nodes: 2})
	_, tok := up.createUser(t, "e2edeps196")
	env := up.userEnv(tok)
	_, other := up.createUser(t, "e2edeps196b")

	small := []string{"--cpus", "0.1", "--memory", "16MiB"}
	sub := func(args ...string) int64 { return submit(t, env, append(small, args...)...) }
	top := sub("--", "sleep", "1")
	left := sub("--after", "ok:"+itoa(top), "--", "sleep", "0.5")
	right := sub("--array", "0-1", "--after", itoa(top), "--", "sleep", "0.5")
	bottom := sub("--after", "ok:"+itoa(left)+",ok:"+itoa(right), "--", "true")
	fails := sub("--after", "ok:"+itoa(bottom), "--", "false")
	orphan := sub("--after", "ok:"+itoa(fails), "--", "true")
	after := sub("--after", "notok:"+itoa(fails), "--", "echo", "cleaning up")
	waitState(t, env, after, dspool.JobSucceeded, 2*time.Minute)

	end := func(id int64) time.Time { return *job(t, env, id).FinishedAt }
	start := func(id int64) time.Time { return *job(t, env, id).StartedAt }
	tk := tasks(t, env, right)
	for _, c := range []struct {
		name        string
		before, aft time.Time
	}{
		{"left after top", end(top), start(left)},
		{"right_0 after top", end(top), *tk[0].StartedAt},
		{"bottom after left", end(left), start(bottom)},
		{"bottom after right_1", *tk[1].FinishedAt, start(bottom)},
	} {
		if c.aft.Before(c.before) {
			t.Errorf("%s: started %s before its parent ended %s", c.name, c.aft.Format(time.StampMicro), c.before.Format(time.StampMicro))
		}
	}
	o := job(t, env, orphan)
	if o.State != dspool.JobCancelled || o.Reason != dspool.ReasonDependency || !strings.Contains(o.Message, "job "+itoa(fails)+" failed") || o.StartedAt != nil {
		t.Errorf("the child of a failed job: %s, reason %s, message %q", o.State, o.Reason, o.Message)
	}
	if out := cliOK(t, env, "job", "logs", itoa(after)); out != "cleaning up\n" {
		t.Errorf("the notok job's output: %q", out)
	}

	// Refused at submit: an unknown job, another user's, a bad list.
	for _, bad := range [][]string{{"--after", "ok:999999"}, {"--after", "maybe:" + itoa(top)}, {"--after", "ok:" + itoa(top) + "_0"}} {
		if _, errs, code := cli(t, env, append(append([]string{"job", "submit"}, bad...), "--", "true")...); code == 0 || !strings.Contains(errs, "after") {
			t.Errorf("submit %v: exit %d, %q; want a refusal naming after", bad, code, errs)
		}
	}
	if _, errs, code := cli(t, up.userEnv(other), "job", "submit", "--after", "ok:"+itoa(top), "--", "true"); code == 0 || !strings.Contains(errs, "you have no job") {
		t.Errorf("another user after this one's job: exit %d, %q", code, errs)
	}

	// Hold and release.
	held := sub("--hold", "--", "true")
	if j := job(t, env, held); j.State != dspool.JobQueued || !j.OnHold || !strings.Contains(j.Waiting, "job release "+itoa(held)) {
		t.Fatalf("a held job: %s, on hold %v, waiting %q", j.State, j.OnHold, j.Waiting)
	}
	cliOK(t, env, "job", "release", itoa(held))
	waitState(t, env, held, dspool.JobSucceeded, time.Minute)
	if _, errs, code := cli(t, env, "job", "hold", itoa(held)); code == 0 || !strings.Contains(errs, "only a queued job can be held") {
		t.Errorf("holding a finished job: exit %d, %q", code, errs)
	}

	// The working directory: where the job is submitted from, in the
	// user's home on the share.
	home := filepath.Join(up.Share, "home", "e2edeps196")
	proj := filepath.Join(home, "proj")
	cmd := exec.Command("runuser", "-u", "e2edeps196", "--", "mkdir", "-p", proj)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkdir in the user's home: %v %s", err, out)
	}
	cmd = exec.Command(bin, "job", "submit", "--wait", "--", "pwd")
	cmd.Env = append(baseEnv(), env...)
	cmd.Dir = proj
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || out.String() != proj+"\n" {
		t.Fatalf("a job submitted from %s ran in %q (%v, %s)", proj, out.String(), err, errb.String())
	}
	if _, err := os.Stat(proj); err != nil {
		t.Fatal(err)
	}
}
