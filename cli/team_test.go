package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// TestTeamCommands: adding a member again says so and changes nothing,
// a limit of 0 nodes says what it means, and a user reads their own limits
// without naming themselves.
func TestTeamCommands(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 47700})
	ctx := context.Background()
	bob, err := p.DB.CreateUser(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, p, p.Admin, "team", "create", "vision"); code != 0 {
		t.Fatalf("team create: exit %d, %s", code, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "team", "add", "vision", "bob"); code != 0 || errs != "" {
		t.Fatalf("team add: exit %d, %q", code, errs)
	}
	if out, errs, code := run(t, p, p.Admin, "team", "add", "vision", "bob"); code != 0 || errs != "bob is already a member of team vision: nothing changed\n" || !strings.Contains(out, "bob") {
		t.Errorf("team add again: exit %d, %q %q", code, out, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "team", "add", "vision", "bob", "--maintainer"); code != 0 || errs != "bob now maintains team vision\n" {
		t.Errorf("team add --maintainer: exit %d, %q", code, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "team", "add", "vision", "bob"); code != 0 || !strings.HasPrefix(errs, "bob no longer maintains team vision") {
		t.Errorf("team add without --maintainer, of a maintainer: exit %d, %q", code, errs)
	}
	if es, err := p.Admin.Audit(ctx, api.AuditQuery{Action: dspool.AuditTeamMemberAdd}); err != nil || len(es) != 3 {
		t.Errorf("member additions in the audit log: %d, %v; want 3 (the repeat changed nothing)", len(es), err)
	}

	out, errs, code := run(t, p, p.Admin, "team", "limits", "vision", "--nodes", "0", "--gpus", "1")
	if code != 0 || !strings.HasPrefix(out, "limits of team vision: 1 gpu, 0 nodes\n") || !strings.Contains(out, "autoscaling adds no node for the waiting work of team vision") {
		t.Errorf("team limits --nodes 0: exit %d, %q %q", code, out, errs)
	}

	two := 2
	if _, err := p.Admin.SetUserLimits(ctx, "bob", dspool.Limits{GPUs: &two}); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := run(t, p, p.ClientFor(bob), "user", "limits"); code != 0 || out != "limits of user bob: 2 gpus\n" {
		t.Errorf("user limits, no name: exit %d, %q %q; want bob's own", code, out, errs)
	}
}
