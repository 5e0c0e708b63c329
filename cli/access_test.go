package cli_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

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
	if code != 0 || !strings.HasPrefix(secret, "dsp_") || strings.Count(out, "\n") != 1 || !strings.Contains(errs, "(ada's): scopes read,jobs") {
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
	if _, errs, code := run(t, p, ci, "token", "create"); code != 1 || !strings.Contains(errs, "lacks the account scope") {
		t.Errorf("token create with a read,jobs token: exit %d, %q", code, errs)
	}
	if _, errs, code := run(t, p, adac, "token", "create", "--expires", "0s"); code != 1 || !strings.Contains(errs, `--expires: "0s": give a positive span of time`) {
		t.Errorf("token create --expires 0s: exit %d, %q", code, errs)
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
	if _, errs, code := run(t, p, ci, "job", "list"); code != 1 || !strings.Contains(errs, "token "+itoa(id)+" (ada's) was revoked on") ||
		!strings.Contains(errs, "`dspool token create`") || !strings.HasSuffix(errs, "(the token sent was DSPOOL_TOKEN)\n") || strings.Contains(errs, "dspool up") {
		t.Errorf("a revoked token: exit %d, %q; want how to get another, which token it was, and no dspool up", code, errs)
	}
	unknown := &api.Client{Server: p.URL, Token: "dsp_nosuchtoken"}
	if _, errs, code := run(t, p, unknown, "job", "list"); code != 1 || !strings.Contains(errs, "token not recognised") ||
		strings.Count(errs, "dspool token create") != 1 || strings.Contains(errs, "dspool up") {
		t.Errorf("an unknown token: exit %d, %q; want one hint, and no dspool up", code, errs)
	}
	none := &api.Client{Server: p.URL}
	if _, errs, code := run(t, p, none, "job", "list"); code != 1 || !strings.Contains(errs, "no API token: give one with --token or DSPOOL_TOKEN") ||
		strings.Count(errs, "DSPOOL_TOKEN") != 1 {
		t.Errorf("no token: exit %d, %q; want the hint once", code, errs)
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
	if _, errs, code := run(t, p, p.Admin, "audit", "--action", "bogus"); code != 1 || !strings.Contains(errs, `--action: "bogus" is not an audited action: give a family (`) {
		t.Errorf("audit --action bogus: exit %d, %q", code, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "audit", "--user", "nobody"); code != 1 || !strings.Contains(errs, "--user: no user nobody") {
		t.Errorf("audit --user nobody: exit %d, %q", code, errs)
	}
	if out, errs, code := run(t, p, p.Admin, "audit", "--action", "secret"); code != 0 || out != "" || errs != "(no audit entries in the last 24h)\n" {
		t.Errorf("audit with nothing to show: exit %d, %q %q; want the note alone, no header", code, out, errs)
	}
}

// TestTokenFromAnExpiringToken: a token that expires makes only tokens
// that expire no later; the default expiry is cut to its own, saying so,
// and an expiry the user chose past it is refused, naming --expires.
func TestTokenFromAnExpiringToken(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	in10d := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	short, err := p.Admin.CreateTokenWith(ctx, api.TokenCreate{Scopes: []string{dspool.ScopeRead, dspool.ScopeAdmin}, ExpiresAt: &in10d})
	if err != nil {
		t.Fatal(err)
	}
	sc := &api.Client{Server: p.URL, Token: short.Secret}

	var made api.NewToken
	out, errs, code := run(t, p, sc, "token", "create", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &made) != nil || made.ExpiresAt == nil || !made.ExpiresAt.Equal(in10d) ||
		!strings.Contains(errs, "note: the token expires on ") || !strings.Contains(errs, "rather than in 90d") {
		t.Errorf("the default expiry from a 10-day token: exit %d, %s %q; want it cut to the token's, with a note", code, out, errs)
	}
	for _, expires := range []string{"never", "200d"} {
		_, errs, code := run(t, p, sc, "token", "create", "--expires", expires)
		if code != 1 || !strings.HasPrefix(errs, "dspool: --expires: ") || !strings.Contains(errs, "give a shorter --expires, at most until ") {
			t.Errorf("--expires %s from a 10-day token: exit %d, %q; want it refused, naming --expires and saying what to give", expires, code, errs)
		}
	}
	if _, errs, code := run(t, p, sc, "job", "submit", "--", "true"); code != 1 ||
		!strings.Contains(errs, "lacks the jobs scope this needs (it has read,account,admin,gateway): use a token that has it, made by a login or by a token with the account and jobs scopes (`dspool token create --scope jobs`)") {
		t.Errorf("a read,admin token submits: exit %d, %q", code, errs)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestTokenForAnotherUserListsItsScopes: `token create --user alice` by an
// admin prints, and `token list` shows, the scopes alice's token really
// has: no admin for a user who is not one.
func TestTokenForAnotherUserListsItsScopes(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	if _, err := p.DB.CreateUser(context.Background(), "alice", false); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, p, p.Admin, "token", "create", "--user", "alice", "--name", "for-alice")
	if code != 0 || !strings.HasPrefix(out, "dsp_") || !strings.Contains(errs, "(alice's): scopes read,jobs,sessions,account,") {
		t.Fatalf("token create --user alice: exit %d, %q %q; want the scopes read,jobs,sessions,account", code, out, errs)
	}
	out, _, code = run(t, p, p.Admin, "token", "list", "--all")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[2] == "for-alice" && f[3] != "read,jobs,sessions,account" {
			t.Errorf("token list --all: alice's token has scopes %s, want read,jobs,sessions,account", f[3])
		}
	}
	if code != 0 || !strings.Contains(out, "for-alice") {
		t.Errorf("token list --all: exit %d:\n%s", code, out)
	}
}
