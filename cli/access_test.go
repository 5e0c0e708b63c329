package cli_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

func TestTokensAndAudit(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	ada, err := p.DB.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	adac := p.ClientFor(ada)

	out, errs, code := run(t, p, adac, "token", "create", "--name", "ci", "--scope", "jobs,read", "--expires", "30d")
	secret := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(secret, "dsp_") || strings.Count(out, "\n") != 1 || !strings.Contains(errs, "scopes read,jobs") {
		t.Fatalf("token create: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	ci := &api.Client{Server: p.URL, Token: secret}

	out, _, code = run(t, p, adac, "token", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID USER NAME SCOPES CREATED EXPIRES LAST USED REVOKED" {
		t.Fatalf("token list: exit %d:\n%s", code, out)
	}
	row := strings.Fields(lines[2])
	if row[1] != "ada" || row[2] != "ci" || row[3] != "read,jobs" || strings.Contains(out, secret) {
		t.Errorf("ci's row: %q", lines[2])
	}
	if _, errs, code := run(t, p, ci, "job", "list"); code != 0 {
		t.Errorf("job list with the ci token: exit %d, %s", code, errs)
	}
	if _, errs, code := run(t, p, ci, "token", "create"); code != 1 || !strings.Contains(errs, "lacks the admin scope") {
		t.Errorf("token create with a read,jobs token: exit %d, %q", code, errs)
	}
	var never api.NewToken
	out, _, code = run(t, p, adac, "token", "create", "--expires", "never", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &never) != nil || never.ExpiresAt != nil || len(never.Scopes) != 4 {
		t.Errorf("token create --expires never: exit %d, %s", code, out)
	}
	if _, errs, code := run(t, p, adac, "token", "create", "--scope", "root"); code != 1 || !strings.Contains(errs, "not a token scope") {
		t.Errorf("token create --scope root: exit %d, %q", code, errs)
	}

	var list []*dspool.Token
	out, _, _ = run(t, p, adac, "token", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 3 {
		t.Fatalf("token list -o json: %s, %v", out, err)
	}
	id := list[1].ID
	var revoked dspool.Token
	out, errs, code = run(t, p, adac, "token", "revoke", itoa(id), "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &revoked) != nil || revoked.Name != "ci" || revoked.RevokedAt == nil {
		t.Errorf("token revoke: exit %d, %q %q", code, out, errs)
	}
	if _, errs, code := run(t, p, ci, "job", "list"); code != 1 || !strings.Contains(errs, "token "+itoa(id)+" was revoked on") {
		t.Errorf("a revoked token: exit %d, %q", code, errs)
	}

	if _, errs, code := run(t, p, adac, "audit"); code != 1 || !strings.Contains(errs, "needs an admin") {
		t.Errorf("audit as ada: exit %d, %q", code, errs)
	}
	out, _, code = run(t, p, p.Admin, "user", "disable", "ada")
	if code != 0 || out != "user ada is disabled\n" {
		t.Errorf("user disable: exit %d, %q", code, out)
	}
	var es []*dspool.AuditEntry
	out, errs, code = run(t, p, p.Admin, "audit", "--user", "ada", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &es) != nil {
		t.Fatalf("audit: exit %d, %s %s", code, out, errs)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Actor+" "+e.Action)
	}
	admin, _ := p.Admin.Whoami(ctx)
	if want := "ada token.create, ada token.create, ada token.revoke, " + admin.Name + " user.disable"; strings.Join(got, ", ") != want {
		t.Errorf("audit --user ada: %q, want %q", strings.Join(got, ", "), want)
	}
	out, _, code = run(t, p, p.Admin, "audit", "--action", "user", "--since", "1h")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[1], "user.disable") || !strings.Contains(lines[1], "user ada") {
		t.Errorf("audit --action user: exit %d:\n%s", code, out)
	}
	if _, errs, code := run(t, p, p.Admin, "audit", "--since", "soon"); code != 1 || !strings.Contains(errs, "--since") {
		t.Errorf("audit --since soon: exit %d, %q", code, errs)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
