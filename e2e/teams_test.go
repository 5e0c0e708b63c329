package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestTeams drives teams through the CLI of the real binary: an admin makes
// a team and its maintainer, the maintainer adds a member, a pool granted
// to the team refuses everyone else, and a job over the team's cpu limit
// waits in the queue with the reason until the team's other job ends.
func TestTeams(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(40)})
	admin := up.env()
	_, annTok := up.createUser(t, "e2eann40")
	_, bobTok := up.createUser(t, "e2ebob40")
	_, outTok := up.createUser(t, "e2eout40")
	ann, bob, out := up.userEnv(annTok), up.userEnv(bobTok), up.userEnv(outTok)

	cliOK(t, admin, "team", "create", "vision")
	cliOK(t, admin, "team", "add", "vision", "e2eann40", "--maintainer")
	cliOK(t, ann, "team", "add", "vision", "e2ebob40")
	if _, errs, code := cli(t, ann, "team", "add", "vision", "e2ebob40"); code != 0 || !strings.Contains(errs, "e2ebob40 is already a member of team vision: nothing changed") {
		t.Errorf("adding a member again: exit code %d, stderr %q", code, errs)
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{ann, []string{"team", "add", "vision", "e2eout40", "--maintainer"}, "only an admin makes a member a maintainer"},
		{ann, []string{"team", "limits", "vision", "--cpus", "8"}, "admin"},
		{bob, []string{"team", "add", "vision", "e2eout40"}, "only an admin or a maintainer of team vision"},
		{out, []string{"team", "create", "mine"}, "admin"},
		{admin, []string{"team", "limits", "vision", "--gpus", "many"}, "--gpus"},
	} {
		if _, errs, code := cli(t, tc.env, tc.args...); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("dspool %s: exit code %d, stderr %q; want a refusal saying %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
	if got := cliOK(t, admin, "team", "limits", "vision", "--cpus", "0.5", "--nodes", "3"); !strings.Contains(got, "limits of team vision: 0.5 cpus, 3 nodes") {
		t.Errorf("team limits: %q", got)
	}
	var tm dspool.Team
	cliJSON(t, out, &tm, "team", "show", "vision")
	if tm.Member("e2eann40") == nil || !tm.Member("e2eann40").Maintainer || tm.Member("e2ebob40") == nil || tm.Limits.String() != "0.5 cpus, 3 nodes" {
		t.Fatalf("team show vision: %+v", tm)
	}

	// A pool for vision alone: others are refused, with the teams named.
	applyPool(t, up, "name: vis\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 0\nteams: [vision]\n")
	if _, errs, code := cli(t, out, "job", "submit", "--pool", "vis", "--", "true"); code == 0 || !strings.Contains(errs, "pool vis is for team vision") {
		t.Errorf("a job of a user in no granted team: exit code %d, stderr %q; want it refused naming team vision", code, errs)
	}
	if got := cliOK(t, admin, "team", "show", "vision"); !strings.Contains(got, "pools:    vis") || !strings.Contains(got, "e2eann40*, e2ebob40") {
		t.Errorf("team show vision:\n%s", got)
	}
	if _, errs, code := cli(t, admin, "team", "delete", "vision"); code == 0 || !strings.Contains(errs, "may use pool vis") {
		t.Errorf("deleting a team a pool is granted to: exit code %d, stderr %q", code, errs)
	}

	// The team may hold half a cpu: ann's job takes it, bob's waits.
	first := submit(t, ann, "--cpus", "0.5", "--", "sh", "-c", "while [ ! -e go ]; do sleep 0.05; done")
	eventually(t, 30*time.Second, "ann's job to start", func() bool { return job(t, ann, first).StartedAt != nil })
	second := submit(t, bob, "--cpus", "0.5", "--", "true")
	var j dspool.Job
	eventually(t, 10*time.Second, "bob's job to wait on the team's limit", func() bool {
		j = *job(t, bob, second).Job
		return j.Held
	})
	if j.State != dspool.JobQueued || j.Team != "vision" || j.Waiting != "team vision: 0.5 of 0.5 cpus in use" {
		t.Fatalf("bob's job: %s for team %q, waiting %q", j.State, j.Team, j.Waiting)
	}
	if got := cliOK(t, bob, "job", "show", itoa(second)); !strings.Contains(got, "waiting:    team vision: 0.5 of 0.5 cpus in use") || !strings.Contains(got, "team:       vision") {
		t.Errorf("job show of the held job:\n%s", got)
	}
	if got := cliOK(t, bob, "job", "list"); !strings.Contains(got, "WAITING") || !strings.Contains(got, "team vision: 0.5 of 0.5 cpus in use") {
		t.Errorf("job list with a held job:\n%s", got)
	}
	if err := os.WriteFile(filepath.Join(up.Share, "jobs", itoa(first), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := waitState(t, bob, second, dspool.JobSucceeded, 30*time.Second); d.Waiting != "" || d.Held {
		t.Errorf("bob's job once ann's ended: waiting %q, held %v", d.Waiting, d.Held)
	}

	// In two teams, on a pool for everyone, a job says which it is for.
	cliOK(t, admin, "team", "create", "nlp")
	cliOK(t, admin, "team", "add", "nlp", "e2ebob40")
	if _, errs, code := cli(t, bob, "job", "submit", "--", "true"); code == 0 ||
		!strings.Contains(errs, "you are in teams nlp and vision, and pool default is for everyone: say with --team which of them this job is for, e.g. --team nlp") {
		t.Errorf("a job of a user in two teams with no --team: exit code %d, stderr %q", code, errs)
	}
	cliOK(t, admin, "team", "remove", "nlp", "e2ebob40")

	cliOK(t, ann, "team", "remove", "vision", "e2ebob40")
	if _, errs, code := cli(t, bob, "job", "submit", "--pool", "vis", "--", "true"); code == 0 || !strings.Contains(errs, "pool vis is for team vision") {
		t.Errorf("a job of a user removed from the team: exit code %d, stderr %q", code, errs)
	}
	if got := cliOK(t, admin, "user", "limits", "e2ebob40", "--cpus", "0.25", "--gpus", "0"); !strings.Contains(got, "limits of user e2ebob40: 0.25 cpus, 0 gpus") {
		t.Errorf("user limits: %q", got)
	}
	if got := cliOK(t, bob, "user", "limits"); !strings.HasPrefix(got, "limits of user e2ebob40: 0.25 cpus, 0 gpus\n") {
		t.Errorf("user limits, of bob by bob, without a name: %q", got)
	}
	if _, errs, code := cli(t, bob, "job", "submit", "--cpus", "0.5", "--", "true"); code == 0 || !strings.Contains(errs, "user e2ebob40 may hold 0.25 at once") {
		t.Errorf("a job over its user's limit on its own: exit code %d, stderr %q", code, errs)
	}
}
