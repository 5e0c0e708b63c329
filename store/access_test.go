package store_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func TestTokenLifecycle(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	ada, _ := db.CreateUser(ctx, "ada", false)
	if _, err := db.CreateUser(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	expires := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	tok, err := db.AddToken(ctx, ada.ID, []byte("h1"), "ci", []string{dspool.ScopeRead, dspool.ScopeJobs}, &expires)
	if err != nil {
		t.Fatal(err)
	}
	if tok.User != "ada" || tok.Name != "ci" || !slices.Equal(tok.Scopes, []string{"read", "jobs"}) || !tok.ExpiresAt.Equal(expires) || tok.RevokedAt != nil {
		t.Fatalf("added %+v", tok)
	}
	all, err := db.AddToken(ctx, ada.ID, []byte("h2"), "", nil, nil)
	if want := []string{"read", "jobs", "sessions", "account"}; err != nil || !slices.Equal(all.Scopes, want) || all.ExpiresAt != nil {
		t.Fatalf("a token without scopes or expiry: %+v, %v; want every scope a non-admin has (%v) and no expiry", all, err, want)
	}
	if _, err := db.AddToken(ctx, ada.ID, []byte("h3"), "", []string{"root"}, nil); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Fatalf("unknown scope: %v, want invalid", err)
	}

	u, got, err := db.TokenByHash(ctx, []byte("h1"))
	if err != nil || u.Name != "ada" || got.ID != tok.ID || !slices.Equal(got.Scopes, tok.Scopes) {
		t.Fatalf("by hash: %+v %+v %v", u, got, err)
	}
	if _, _, err := db.TokenByHash(ctx, []byte("nope")); dspool.ErrorCode(err) != dspool.EUnauthorized {
		t.Fatalf("unknown hash: %v, want unauthorized", err)
	}

	at := time.Now().UTC().Truncate(time.Second)
	if err := db.TouchToken(ctx, tok.ID, at); err != nil {
		t.Fatal(err)
	}
	list, err := db.Tokens(ctx, "ada")
	if err != nil || len(list) != 2 || list[0].LastUsed == nil || !list[0].LastUsed.Equal(at) {
		t.Fatalf("ada's tokens: %+v, %v", list, err)
	}
	if list, err := db.Tokens(ctx, "bob"); err != nil || len(list) != 0 {
		t.Fatalf("bob's tokens: %+v, %v; want none", list, err)
	}

	if _, err := db.RevokeToken(ctx, tok.ID, "bob", at); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Fatalf("bob revokes ada's token: %v, want not found", err)
	}
	if _, got, _ := db.TokenByHash(ctx, []byte("h1")); got.RevokedAt != nil {
		t.Fatalf("bob's refused revocation revoked it: %+v", got)
	}
	r, err := db.RevokeToken(ctx, tok.ID, "ada", at)
	if err != nil || r.RevokedAt == nil || !r.RevokedAt.Equal(at) {
		t.Fatalf("revoke: %+v, %v", r, err)
	}
	again, err := db.RevokeToken(ctx, tok.ID, "", at.Add(time.Hour))
	if err != nil || !again.RevokedAt.Equal(at) {
		t.Fatalf("revoke again: %+v, %v; want the first revocation kept", again, err)
	}
}

func TestDisableUser(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	ada, _ := db.CreateUser(ctx, "ada", false)
	if err := db.CreateWebSession(ctx, ada.ID, []byte("cookie"), "x", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, err := db.SetUserDisabled(ctx, "ada", true, time.Now())
	if err != nil || !u.Disabled {
		t.Fatalf("disable: %+v, %v", u, err)
	}
	if u, _ := db.User(ctx, "ada"); !u.Disabled {
		t.Fatalf("user after disable: %+v", u)
	}
	if _, _, err := db.WebSession(ctx, []byte("cookie")); dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "your account (user ada) is disabled") {
		t.Fatalf("web login of a disabled user: %v, want unauthorized, saying why", err)
	}
	if err := db.CreateWebSession(ctx, ada.ID, []byte("cookie2"), "x", time.Now().Add(time.Hour)); dspool.ErrorCode(err) != dspool.EUnauthorized {
		t.Fatalf("new web login of a disabled user: %v, want unauthorized", err)
	}
	if u, err := db.SetUserDisabled(ctx, "ada", false, time.Now()); err != nil || u.Disabled {
		t.Fatalf("enable: %+v, %v", u, err)
	}
	// Enabling does not bring back the logins that disabling ended.
	if _, _, err := db.WebSession(ctx, []byte("cookie")); dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "your login has ended") {
		t.Fatalf("old web login after enable: %v, want unauthorized: ended", err)
	}
	if _, err := db.SetUserDisabled(ctx, "nobody", true, time.Now()); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Fatalf("disable an unknown user: %v", err)
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db := open(t, path)
	ctx := context.Background()
	if err := db.AddAudit(ctx, dspool.AuditEntry{Actor: "ada", Action: dspool.AuditTokenCreate, Target: "token 1", Outcome: dspool.AuditSuccess}); err != nil {
		t.Fatal(err)
	}
	// Not even a writer that goes around dspool can change or remove it.
	raw := store.RawAt(t, path)
	for _, q := range []string{`UPDATE audit SET actor = 'mallory'`, `DELETE FROM audit`} {
		if _, err := raw.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the trigger's refusal", q, err)
		}
	}
	if es, err := db.Audit(ctx, store.AuditFilter{}); err != nil || len(es) != 1 || es[0].Actor != "ada" {
		t.Fatalf("entries: %+v, %v", es, err)
	}
}

func TestAuditFilter(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	db, err := store.OpenAt(t, filepath.Join(t.TempDir(), "s.db"), store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	add := func(ago time.Duration, actor, action, target string) {
		t.Helper()
		if err := db.AddAudit(ctx, dspool.AuditEntry{At: now.Add(-ago), Actor: actor, Action: action, Target: target, Outcome: dspool.AuditSuccess}); err != nil {
			t.Fatal(err)
		}
	}
	add(48*time.Hour, "ada", dspool.AuditLoginWeb, "user ada")
	add(2*time.Hour, dspool.AuditAnonymous, dspool.AuditLoginSSH, "user ada")
	add(time.Hour, "admin", dspool.AuditUserDisable, "user ada")
	add(time.Hour, "admin", dspool.AuditPoolApply, "pool gpu")
	add(0, "bob", dspool.AuditLoginSSH, "user bob")
	add(0, "bob", "loginx", "user bob") // not of the login family
	if err := db.AddAudit(ctx, dspool.AuditEntry{At: now, Actor: "admin", Action: dspool.AuditTokenRevoke, Target: "token 3", Outcome: dspool.AuditSuccess, Detail: "of user ada, named \"ci\""}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddAudit(ctx, dspool.AuditEntry{At: now, Actor: "admin", Action: dspool.AuditKeyRemove, Target: "key SHA256:x", Outcome: dspool.AuditSuccess, Detail: "of user ada_b"}); err != nil {
		t.Fatal(err)
	}

	ids := func(f store.AuditFilter) string {
		t.Helper()
		es, err := db.Audit(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Actor+":"+e.Action)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		name string
		f    store.AuditFilter
		want string
	}{
		{"all", store.AuditFilter{}, "ada:login.web anonymous:login.ssh admin:user.disable admin:pool.apply bob:login.ssh bob:loginx admin:token.revoke admin:key.remove"},
		{"since", store.AuditFilter{Since: now.Add(-3 * time.Hour)}, "anonymous:login.ssh admin:user.disable admin:pool.apply bob:login.ssh bob:loginx admin:token.revoke admin:key.remove"},
		{"by or on a user", store.AuditFilter{User: "ada"}, "ada:login.web anonymous:login.ssh admin:user.disable admin:token.revoke"},
		{"on a user's key", store.AuditFilter{User: "ada_b"}, "admin:key.remove"},
		{"a family", store.AuditFilter{Action: "login"}, "ada:login.web anonymous:login.ssh bob:login.ssh"},
		{"one action", store.AuditFilter{Action: dspool.AuditLoginSSH, User: "bob"}, "bob:login.ssh"},
		{"the newest, oldest first", store.AuditFilter{Limit: 2}, "admin:token.revoke admin:key.remove"},
	} {
		if got := ids(c.f); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
