package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestJobs runs batch jobs through the CLI against `dspool up --nodes 2`,
// as a user who is not the admin.
func TestJobs(t *testing.T) {
	up := startUp(t, upConfig{Nodes: 2, UIDBase: uidBase(1)})
	alice, token := up.createUser(t, "e2ejobs1")
	env := up.userEnv(token)
	// Small jobs, so that the subtests' jobs run side by side.
	small := []string{"--cpus", "0.1", "--memory", "64MiB"}
	sub := func(args ...string) []string { return append(append([]string{}, small...), args...) }
	// The user's first job creates their OS account alone: the subtests'
	// jobs then start on both nodes at once (a first job on two agents at
	// once is TestNewUserOnTwoAgents).
	if j, errs, code := submitWait(t, env, sub("--", "true")...); code != 0 {
		t.Fatalf("the user's first job: exit code %d, state %s, reason %s, message %q (stderr: %s)", code, j.State, j.Reason, j.Message, errs)
	}

	t.Run("output and files", func(t *testing.T) {
		t.Parallel()
		j, errs, code := submitWait(t, env, sub("--", "sh", "-c", "echo out; echo err >&2; echo data > result.txt")...)
		if code != 0 || j.State != dspool.JobSucceeded {
			t.Fatalf("submit --wait: exit code %d, state %s; want 0, succeeded (stderr: %s)", code, j.State, errs)
		}
		if j.User != alice.Name {
			t.Errorf("job user: got %q, want %q", j.User, alice.Name)
		}
		logs := cliOK(t, env, "job", "logs", itoa(j.ID))
		for _, want := range []string{"out\n", "err\n"} {
			if !strings.Contains(logs, want) {
				t.Errorf("job logs %d: got %q, want it to contain %q", j.ID, logs, want)
			}
		}
		path := filepath.Join(up.Share, "jobs", itoa(j.ID), "result.txt")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the job's file on the share: %v", err)
		}
		if string(b) != "data\n" {
			t.Errorf("%s: got %q, want %q", path, b, "data\n")
		}
		var users []*dspool.User
		cliJSON(t, up.env(), &users, "user", "list")
		uid := -1
		for _, u := range users {
			if u.Name == j.User {
				uid = u.UID
			}
		}
		if uid != alice.UID {
			t.Fatalf("user list: uid of %s is %d, want %d as user create said", j.User, uid, alice.UID)
		}
		requireRoot(t)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if owner := st.Sys().(*syscall.Stat_t).Uid; int(owner) != uid {
			t.Errorf("%s is owned by uid %d, want the job's user's uid %d", path, owner, uid)
		}
	})

	t.Run("runs as the user's uid", func(t *testing.T) {
		t.Parallel()
		requireRoot(t)
		j, _, code := submitWait(t, env, sub("--", "id", "-u")...)
		if code != 0 {
			t.Fatalf("submit --wait id -u: exit code %d, state %s", code, j.State)
		}
		got := strings.TrimSpace(cliOK(t, env, "job", "logs", itoa(j.ID)))
		if got != strconv.Itoa(alice.UID) {
			t.Errorf("id -u in the job printed %q, want the user's uid %d", got, alice.UID)
		}
	})

	t.Run("exit code passthrough", func(t *testing.T) {
		t.Parallel()
		j, _, code := submitWait(t, env, sub("--", "sh", "-c", "exit 7")...)
		if code != 7 {
			t.Errorf("submit --wait of `exit 7`: exit code %d, want 7", code)
		}
		if j.State != dspool.JobFailed || j.Reason != dspool.ReasonExit || exitCode(j) != "7" {
			t.Errorf("job: state %s, reason %q, exit_code %s; want failed, exit, 7", j.State, j.Reason, exitCode(j))
		}
	})

	t.Run("time limit", func(t *testing.T) {
		t.Parallel()
		began := time.Now()
		j, _, code := submitWait(t, env, sub("--time", "1s", "--", "sleep", "60")...)
		if code == 0 {
			t.Errorf("submit --wait of a job past its time limit exited 0")
		}
		if j.State != dspool.JobFailed || j.Reason != dspool.ReasonTimeout {
			t.Errorf("job: state %s, reason %q; want failed, timeout", j.State, j.Reason)
		}
		if d := time.Since(began); d > 30*time.Second {
			t.Errorf("a 1s time limit ended the job after %s", d)
		}
		if j.StartedAt == nil || j.FinishedAt == nil || j.FinishedAt.Sub(*j.StartedAt) < time.Second {
			t.Errorf("job ran from %v to %v: want at least its 1s time limit", j.StartedAt, j.FinishedAt)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		id := submit(t, env, sub("--", "sleep", "60")...)
		eventually(t, 30*time.Second, "the job to start", func() bool {
			j := job(t, env, id)
			return j.State == dspool.JobRunning && j.StartedAt != nil
		})
		cliOK(t, env, "job", "cancel", itoa(id))
		j := waitState(t, env, id, dspool.JobCancelled, 15*time.Second)
		if j.FinishedAt == nil {
			t.Errorf("cancelled job has no finished_at")
		}
	})

	t.Run("cancel kills daemons", func(t *testing.T) {
		t.Parallel()
		requireRoot(t) // cgroups: setsid takes the daemon out of the job's process group
		id := submit(t, env, sub("--", "sh", "-c", "setsid sleep 4242 & sleep 60")...)
		eventually(t, 30*time.Second, "the job's daemon `sleep 4242` to run", func() bool {
			return len(procs(alice.UID, "sleep", "4242")) > 0
		})
		cliOK(t, env, "job", "cancel", itoa(id))
		waitState(t, env, id, dspool.JobCancelled, 15*time.Second)
		if left := procs(alice.UID, "sleep", "4242"); len(left) > 0 {
			t.Errorf("after the job was cancelled, its daemon still runs: pids %v", left)
		}
	})

	t.Run("start error", func(t *testing.T) {
		t.Parallel()
		j, _, code := submitWait(t, env, sub("--", "e2e-no-such-command")...)
		if code == 0 {
			t.Errorf("submit --wait of a missing command exited 0")
		}
		if j.State != dspool.JobFailed || j.Reason != dspool.ReasonStartError {
			t.Errorf("job: state %s, reason %q; want failed, start_error", j.State, j.Reason)
		}
		if !strings.Contains(j.Message, "e2e-no-such-command") {
			t.Errorf("job message %q does not name the missing command", j.Message)
		}
	})

	t.Run("retries exhausted", func(t *testing.T) {
		t.Parallel()
		j, _, code := submitWait(t, env, sub("--retries", "2", "--", "sh", "-c", "exit 1")...)
		if code != 1 || j.State != dspool.JobFailed || j.Attempt != 3 {
			t.Fatalf("job: exit code %d, state %s, attempt %d; want 1, failed, 3", code, j.State, j.Attempt)
		}
		d := job(t, env, j.ID)
		if len(d.Attempts) != 3 {
			t.Fatalf("job show: %d attempts, want 3", len(d.Attempts))
		}
		for _, a := range d.Attempts {
			if a.Reason != dspool.ReasonExit || a.ExitCode == nil || *a.ExitCode != 1 {
				t.Errorf("attempt %d: reason %q, exit code %v; want exit, 1", a.Number, a.Reason, a.ExitCode)
			}
		}
	})

	t.Run("retry succeeds", func(t *testing.T) {
		t.Parallel()
		j, _, code := submitWait(t, env, sub("--retries", "2", "--", "sh", "-c", `test "$DSPOOL_ATTEMPT" = 2`)...)
		if code != 0 || j.State != dspool.JobSucceeded || j.Attempt != 2 {
			t.Fatalf("job: exit code %d, state %s, attempt %d; want 0, succeeded, 2", code, j.State, j.Attempt)
		}
		d := job(t, env, j.ID)
		if len(d.Attempts) != 2 || d.Attempts[0].Reason != dspool.ReasonExit || d.Attempts[1].Reason != "" {
			t.Errorf("attempts: got %+v, want the first failed (exit) and the second succeeded", d.Attempts)
		}
	})

	t.Run("json fields", func(t *testing.T) {
		t.Parallel()
		j, _, _ := submitWait(t, env, sub("--name", "fields", "--", "sh", "-c", "exit 3")...)
		want := []string{"id", "name", "user", "pool", "state", "reason", "exit_code", "attempt", "node",
			"cpus", "memory", "gpus", "submitted_at", "started_at", "finished_at"}
		var list []map[string]any
		cliJSON(t, env, &list, "job", "list")
		var listed map[string]any
		for _, x := range list {
			if x["id"] == float64(j.ID) {
				listed = x
			}
		}
		if listed == nil {
			t.Fatalf("job list -o json does not list job %d", j.ID)
		}
		var shown map[string]any
		cliJSON(t, env, &shown, "job", "show", itoa(j.ID))
		for name, obj := range map[string]map[string]any{"job list": listed, "job show": shown} {
			for _, f := range want {
				if _, ok := obj[f]; !ok {
					t.Errorf("%s -o json: job %d has no field %q", name, j.ID, f)
				}
			}
			if obj["name"] != "fields" || obj["user"] != alice.Name || obj["pool"] != "default" || obj["state"] != "failed" ||
				obj["reason"] != "exit" || obj["exit_code"] != float64(3) || obj["attempt"] != float64(1) || obj["node"] == nil || obj["node"] == "" {
				t.Errorf("%s -o json: got %v, want name fields, user %s, pool default, failed, exit, exit_code 3, attempt 1, a node", name, obj, alice.Name)
			}
		}
	})

	t.Run("logs follow", func(t *testing.T) {
		t.Parallel()
		id := submit(t, env, sub("--", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.25; done")...)
		lines, times, code := followLogs(t, env, id)
		if code != 0 {
			t.Errorf("job logs -f: exit code %d", code)
		}
		// logs -f ends when the job ends, so the job has ended now.
		if j := job(t, env, id); j.State != dspool.JobSucceeded {
			t.Errorf("after job logs -f ended the job is %s, want succeeded", j.State)
		}
		want := []string{"line1", "line2", "line3", "line4", "line5"}
		if strings.Join(lines, ",") != strings.Join(want, ",") {
			t.Fatalf("job logs -f printed %q, want %q", lines, want)
		}
		if gap := times[4].Sub(times[0]); gap < 500*time.Millisecond {
			t.Errorf("job logs -f printed the first and the last line %s apart: want them streamed as the job printed them (about 1s)", gap)
		}
	})

	t.Run("wait several", func(t *testing.T) {
		t.Parallel()
		ids := []string{
			itoa(submit(t, env, sub("--", "sleep", "0.5")...)),
			itoa(submit(t, env, sub("--", "true")...)),
			itoa(submit(t, env, sub("--", "sleep", "1")...)),
		}
		var jobs []*dspool.Job
		out, errs, code := cli(t, env, append([]string{"job", "wait", "--timeout", "60s", "-o", "json"}, ids...)...)
		if code != 0 {
			t.Fatalf("job wait %v: exit code %d, want 0: %s", ids, code, errs)
		}
		if err := json.Unmarshal([]byte(out), &jobs); err != nil {
			t.Fatalf("job wait -o json: %v: %s", err, out)
		}
		if len(jobs) != len(ids) {
			t.Fatalf("job wait printed %d jobs, want %d", len(jobs), len(ids))
		}
		for i, j := range jobs {
			if itoa(j.ID) != ids[i] || j.State != dspool.JobSucceeded {
				t.Errorf("job wait: job %d is %s, want job %s succeeded", j.ID, j.State, ids[i])
			}
		}
		bad := itoa(submit(t, env, sub("--", "sh", "-c", "exit 5")...))
		if _, _, code := cli(t, env, "job", "wait", "--timeout", "60s", ids[0], bad); code != 1 {
			t.Errorf("job wait of a succeeded and a failed job: exit code %d, want 1", code)
		}
	})
}

// submitWait runs `job submit --wait -o json` and returns the finished job,
// what it printed on stderr and its exit code.
func submitWait(t *testing.T, env []string, args ...string) (*dspool.Job, string, int) {
	t.Helper()
	out, errs, code := cli(t, env, append([]string{"job", "submit", "--wait", "-o", "json"}, args...)...)
	var j dspool.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID == 0 {
		t.Fatalf("job submit --wait %s: exit code %d, output %q: %v\nstderr: %s", strings.Join(args, " "), code, out, err, errs)
	}
	if !j.State.Terminal() {
		t.Fatalf("job submit --wait returned job %d %s, want a finished job", j.ID, j.State)
	}
	return &j, errs, code
}

// followLogs runs `job logs -f` until it exits and returns the lines it
// printed with when each arrived.
func followLogs(t *testing.T, env []string, id int64) ([]string, []time.Time, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "job", "logs", "-f", itoa(id))
	cmd.Env = append(baseEnv(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	var times []time.Time
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		times = append(times, time.Now())
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("job logs -f %d did not end within a minute of a job that takes about 1s", id)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		t.Logf("job logs -f stderr: %s", errb.String())
	} else if err != nil {
		t.Fatal(err)
	}
	return lines, times, code
}

// procs returns the live processes of uid whose argv is argv.
func procs(uid int, argv ...string) []int {
	want := strings.Join(argv, "\x00")
	return procsMatching(uid, func(args []string) bool { return strings.Join(args, "\x00") == want })
}

// procsMatching lists the processes of uid whose argument list match
// accepts. A zombie (an empty command line: dead, only not reaped) never
// matches.
func procsMatching(uid int, match func(args []string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", e.Name()))
		if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")) {
			out = append(out, pid)
		}
	}
	return out
}
