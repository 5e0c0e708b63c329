package e2e_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestUsersIsolation checks that a user with a token of their own sees
// their own jobs and nothing of the admin's.
func TestUsersIsolation(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(2)})
	admin := up.env()
	bob, token := up.createUser(t, "e2ebob2")
	user := up.userEnv(token)

	// The admin's job waits in a pool without nodes: it need not run to be
	// hidden.
	applyPool(t, up, "name: idle\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 0\n")
	adminJob := submit(t, admin, "--pool", "idle", "--", "true")

	j, errs, code := submitWait(t, user, "--cpus", "0.1", "--", "sh", "-c", "echo hi")
	if code != 0 || j.State != dspool.JobSucceeded || j.User != bob.Name {
		t.Fatalf("the user's job: exit code %d, state %s, user %s; want 0, succeeded, %s (stderr: %s)", code, j.State, j.User, bob.Name, errs)
	}
	userJob := j.ID

	for _, args := range [][]string{
		{"job", "show", itoa(adminJob)},
		{"job", "logs", itoa(adminJob)},
		{"job", "cancel", itoa(adminJob)},
		{"job", "wait", "--timeout", "1s", itoa(adminJob)},
	} {
		out, errs, code := cli(t, user, args...)
		if code == 0 || !strings.Contains(errs, "not found") {
			t.Errorf("the user's `dspool %s`: exit code %d, stderr %q, stdout %q; want a failure that says not found",
				strings.Join(args, " "), code, errs, out)
		}
	}
	req, _ := http.NewRequest("GET", up.URL+"/api/v1/jobs/"+itoa(adminJob), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET another user's job: status %d, want 404: %s", resp.StatusCode, body)
	}
	if j := job(t, admin, adminJob); j.State != dspool.JobQueued {
		t.Errorf("the admin's job is %s after the user tried to cancel it, want queued", j.State)
	}

	if got := listIDs(t, user, "job", "list"); !sameIDs(got, userJob) {
		t.Errorf("the user's job list: got jobs %v, want only their own job %d", got, userJob)
	}
	if _, errs, code := cli(t, user, "job", "list", "--all-users"); code == 0 {
		t.Errorf("job list --all-users as a user who is not an admin exited 0, want a refusal")
	} else if !strings.Contains(errs, "admin") {
		t.Errorf("job list --all-users as a user: stderr %q does not say it needs an admin", errs)
	}
	if got := listIDs(t, admin, "job", "list", "--all-users"); !sameIDs(got, userJob, adminJob) {
		t.Errorf("the admin's job list --all-users: got jobs %v, want %d and %d", got, userJob, adminJob)
	}
	if got := listIDs(t, admin, "job", "list"); !sameIDs(got, adminJob) {
		t.Errorf("the admin's own job list: got jobs %v, want only %d", got, adminJob)
	}
	if _, errs, code := cli(t, user, "user", "create", "e2emallory2"); code == 0 || !strings.Contains(errs, "admin") {
		t.Errorf("user create by a user who is not an admin: exit code %d, stderr %q; want a refusal naming admin", code, errs)
	}
}

// listIDs runs a job list command with -o json and returns the ids.
func listIDs(t *testing.T, env []string, args ...string) []int64 {
	t.Helper()
	var l []*dspool.Job
	cliJSON(t, env, &l, args...)
	ids := make([]int64, len(l))
	for i, j := range l {
		ids[i] = j.ID
	}
	return ids
}

func sameIDs(got []int64, want ...int64) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[int64]bool{}
	for _, id := range got {
		seen[id] = true
	}
	for _, id := range want {
		if !seen[id] {
			return false
		}
	}
	return true
}

// applyPool applies a pool file with `dspool pool apply -f` as the admin.
func applyPool(t *testing.T, up *upProc, yaml string) {
	t.Helper()
	f := writeFile(t, "pool-*.yaml", yaml)
	cliOK(t, up.env(), "pool", "apply", "-f", f)
}
