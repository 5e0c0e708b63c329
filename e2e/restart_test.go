package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestRestart stops `dspool up` as Ctrl-C does and starts it again on the
// same data directory: pools, users, tokens and jobs are as they were.
func TestRestart(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(3)})
	carol, token := up.createUser(t, "e2ecarol3")
	applyPool(t, up, "name: idle\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 0\nlabels: {kind: e2e}\n")
	user := up.userEnv(token)
	small := []string{"--cpus", "0.1", "--memory", "64MiB"}

	ok, _, _ := submitWait(t, user, append(small, "--", "sh", "-c", "echo before restart")...)
	bad, _, _ := submitWait(t, user, append(small, "--retries", "1", "--", "sh", "-c", "exit 3")...)
	queued := submit(t, user, "--pool", "idle", "--", "true")
	cancelled := submit(t, user, "--pool", "idle", "--", "true")
	cliOK(t, user, "job", "cancel", itoa(cancelled))
	running := submit(t, user, append(small, "--", "sleep", "60")...)
	eventually(t, 30*time.Second, "the long job to start", func() bool {
		j := job(t, user, running)
		return j.State == dspool.JobRunning && j.StartedAt != nil
	})
	if ok.State != dspool.JobSucceeded || bad.State != dspool.JobFailed {
		t.Fatalf("before the restart: jobs %d and %d are %s and %s, want succeeded and failed", ok.ID, bad.ID, ok.State, bad.State)
	}
	wantStates := map[int64]dspool.JobState{ok.ID: dspool.JobSucceeded, bad.ID: dspool.JobFailed,
		queued: dspool.JobQueued, cancelled: dspool.JobCancelled}
	before := map[int64]string{}
	for id, state := range wantStates {
		j := job(t, user, id)
		if j.State != state {
			t.Fatalf("before the restart: job %d is %s, want %s", id, j.State, state)
		}
		before[id] = jobJSON(t, j)
	}
	pools := poolsJSON(t, up)
	var users []*dspool.User
	cliJSON(t, up.env(), &users, "user", "list")
	logs := cliOK(t, user, "job", "logs", itoa(ok.ID))

	up.Stop()
	if code := up.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("dspool up stopped by SIGINT exited %d, want 0", code)
	}
	if left := procs(runsAs(carol), "sleep", "60"); len(left) > 0 {
		t.Errorf("after dspool up stopped, the user's job still runs: pids %v", left)
	}

	up2 := startUp(t, upConfig{UIDBase: uidBase(3), Data: up.Data, Login: up.Login})
	user = up2.userEnv(token) // the token outlives the restart
	for id := range wantStates {
		if got := jobJSON(t, job(t, user, id)); got != before[id] {
			t.Errorf("job %d after the restart:\n%s\nwant as before:\n%s", id, got, before[id])
		}
	}
	if got := poolsJSON(t, up2); got != pools {
		t.Errorf("pools after the restart:\n%s\nwant as before:\n%s", got, pools)
	}
	var users2 []*dspool.User
	cliJSON(t, up2.env(), &users2, "user", "list")
	if a, b := mustJSON(t, users2), mustJSON(t, users); a != b {
		t.Errorf("users after the restart:\n%s\nwant as before:\n%s", a, b)
	}
	if got := cliOK(t, user, "job", "logs", itoa(ok.ID)); got != logs {
		t.Errorf("logs of job %d after the restart: got %q, want %q", ok.ID, got, logs)
	}
	if got := listIDs(t, user, "job", "list"); !sameIDs(got, ok.ID, bad.ID, queued, cancelled, running) {
		t.Errorf("the user's jobs after the restart: got %v, want %v", got, []int64{ok.ID, bad.ID, queued, cancelled, running})
	}

	// The job that was running when the pool stopped was killed with its
	// agent; it must end, not stay running with no process behind it.
	var j *api.JobDetail
	eventually(t, 30*time.Second, "the job running at the stop to end", func() bool {
		j = job(t, user, running)
		return j.State.Terminal()
	})
	t.Logf("the job running when dspool up stopped ended %s, reason %q, exit code %s: %s", j.State, j.Reason, exitCode(j.Job), j.Message)

	after, errs, code := submitWait(t, user, append(small, "--", "sh", "-c", "echo after restart")...)
	if code != 0 || after.State != dspool.JobSucceeded {
		t.Errorf("a job after the restart: exit code %d, state %s; want 0, succeeded (stderr: %s)", code, after.State, errs)
	}
	if after.ID <= running {
		t.Errorf("a job after the restart got id %d, want ids to go on growing past %d", after.ID, running)
	}
	cliOK(t, user, "job", "cancel", itoa(queued))
}

// poolsJSON is every pool's definition, without its nodes.
func poolsJSON(t *testing.T, up *upProc) string {
	t.Helper()
	var ds []*api.PoolDetail
	cliJSON(t, up.env(), &ds, "pool", "list")
	var out []string
	for _, d := range ds {
		out = append(out, mustJSON(t, d.Pool))
	}
	return strings.Join(out, "\n")
}

func jobJSON(t *testing.T, j *api.JobDetail) string { return mustJSON(t, j) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
