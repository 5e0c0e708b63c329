package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestPriorityBounds: with the real binary, an admin gives a team a range
// of priorities and a default; a submission outside it is refused with the
// range, one without a priority gets the default, a maintainer raises a
// queued job within the range, and an ordinary member may not.
func TestPriorityBounds(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(199)})
	admin := up.env()
	_, annTok := up.createUser(t, "e2eann199")
	_, bobTok := up.createUser(t, "e2ebob199")
	_, cyTok := up.createUser(t, "e2ecy199")
	ann, bob, cy := up.userEnv(annTok), up.userEnv(bobTok), up.userEnv(cyTok)

	cliOK(t, admin, "team", "create", "vision")
	cliOK(t, admin, "team", "add", "vision", "e2eann199", "--maintainer")
	cliOK(t, admin, "team", "add", "vision", "e2ebob199")
	cliOK(t, admin, "team", "add", "vision", "e2ecy199")
	if _, errs, code := cli(t, admin, "team", "limits", "vision", "--priority", "100..-100"); code == 0 || !strings.Contains(errs, "--priority: 100..-100 is not a range of priorities") {
		t.Errorf("an empty range: exit code %d, stderr %q", code, errs)
	}
	if got := cliOK(t, admin, "team", "limits", "vision", "--priority", "-100..100", "--default-priority", "10"); !strings.Contains(got, "limits of team vision: priority -100..100, default priority 10") {
		t.Errorf("team limits: %q", got)
	}

	// Out of range: refused, with the range and whose it is.
	_, errs, code := cli(t, bob, "job", "submit", "--hold", "--priority", "500", "--", "true")
	if want := "priority: 500 is out of range for user e2ebob199 in team vision: give -100 to 100 (the range of team vision), or ask an admin"; code == 0 || !strings.Contains(errs, want) {
		t.Errorf("bob at priority 500: exit code %d, stderr %q; want %q", code, errs, want)
	}
	// None given: the team's default.
	var j dspool.Job
	if err := json.Unmarshal([]byte(cliOK(t, bob, "job", "submit", "--hold", "-o", "json", "--", "true")), &j); err != nil {
		t.Fatal(err)
	}
	if j.Priority != 10 || j.Team != "vision" {
		t.Fatalf("bob's job without a priority: %+v; want priority 10, team vision", j)
	}
	id := fmt.Sprint(j.ID)
	if got := cliOK(t, bob, "job", "show", id); !strings.Contains(got, "priority:   10") {
		t.Errorf("job show:\n%s", got)
	}

	// The maintainer raises it within the team's range, not past it.
	if got := cliOK(t, ann, "job", "priority", id, "100"); !strings.Contains(got, "job "+id+": priority 100") {
		t.Errorf("the maintainer raises it: %q", got)
	}
	if _, errs, code := cli(t, ann, "job", "priority", id, "101"); code == 0 || !strings.Contains(errs, "give -100 to 100") {
		t.Errorf("the maintainer past the range: exit code %d, stderr %q", code, errs)
	}
	// An ordinary member of the team may not touch another's job, nor its
	// owner raise it past the range.
	if _, errs, code := cli(t, cy, "job", "priority", id, "50"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("an ordinary member changes bob's job: exit code %d, stderr %q; want not found", code, errs)
	}
	if _, errs, code := cli(t, bob, "job", "priority", id, "200"); code == 0 || !strings.Contains(errs, "give -100 to 100") {
		t.Errorf("bob raises his own past the range: exit code %d, stderr %q", code, errs)
	}
	cliJSON(t, bob, &j, "job", "show", id)
	if j.Priority != 100 || j.State != dspool.JobQueued {
		t.Errorf("bob's job after the changes: %+v; want queued at 100", j)
	}
	// An admin gives any, a negative one after --.
	cliOK(t, admin, "job", "priority", id, "--", "-1000")
	cliJSON(t, bob, &j, "job", "show", id)
	if j.Priority != -1000 {
		t.Errorf("after the admin's change: priority %d, want -1000", j.Priority)
	}
	// A rerun of a job an admin raised past its owner's range gets the
	// owner's default instead.
	cliOK(t, admin, "job", "priority", id, "500")
	out, errs, code := cli(t, bob, "job", "rerun", "-o", "json", id)
	var rerun dspool.Job
	if code != 0 || json.Unmarshal([]byte(out), &rerun) != nil || rerun.Priority != 10 || !strings.Contains(errs, "job "+id+"'s priority 500 is past your range") {
		t.Errorf("bob reruns the job an admin raised to 500: exit code %d, stdout %q, stderr %q; want a new job at the default, 10", code, out, errs)
	}
	audit := cliOK(t, admin, "audit", "--action", "job.priority")
	for _, want := range []string{"e2eann199", "priority 10 to 100", "priority 100 to -1000", "priority -1000 to 500"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
}
