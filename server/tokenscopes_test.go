package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/server"
)

// TestTokenShowsWhatItCanDo: a token has, and lists, the scopes it really
// has for its user: admin only for an admin; for anyone else the account
// scope, which the admin scope of tokens made before it stands for.
func TestTokenShowsWhatItCanDo(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	alice, _ := user(t, p, "alice", false)
	tests := []struct {
		name   string
		scopes []string
		want   string
	}{
		{"default scopes", nil, "read,jobs,sessions,account"},
		{"admin asked for", []string{dspool.ScopeAdmin}, "account"},
		{"every scope asked for", dspool.Scopes, "read,jobs,sessions,account"},
		{"read alone", []string{dspool.ScopeRead}, "read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := p.Admin.CreateTokenWith(ctx, api.TokenCreate{User: "alice", Scopes: tt.scopes})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tok.Scopes, ","); got != tt.want {
				t.Errorf("created for alice: scopes %s, want %s", got, tt.want)
			}
			list, err := p.Admin.Tokens(ctx, "alice", false)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range list {
				if l.ID == tok.ID && strings.Join(l.Scopes, ",") != tt.want {
					t.Errorf("listed: scopes %v, want %s", l.Scopes, tt.want)
				}
			}
		})
	}

	// A token stored with admin before the account scope lists account and
	// still manages the account, and nothing of the pool.
	secret := server.NewSecret("dsp_")
	if _, err := p.DB.AddToken(ctx, alice.ID, server.HashSecret(secret), "old", []string{dspool.ScopeRead, dspool.ScopeAdmin}, nil); err != nil {
		t.Fatal(err)
	}
	old := &api.Client{Server: p.URL, Token: secret}
	list, err := old.Tokens(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		if l.Name == "old" && strings.Join(l.Scopes, ",") != "read,account" {
			t.Errorf("alice's token stored with read,admin lists %v, want read,account", l.Scopes)
		}
	}
	if _, err := old.AddKey(ctx, "", newPublicKey(t)); err != nil {
		t.Errorf("alice's old read,admin token adds her key: %v", err)
	}
	_, err = old.Users(ctx)
	wantCode(t, "alice's old read,admin token lists users", err, dspool.EForbidden, "needs an admin")

	// An admin's token with account and not admin manages the account
	// alone: no tokens for others.
	acct, tok := tokenClient(t, p.Admin, api.TokenCreate{Scopes: []string{dspool.ScopeRead, dspool.ScopeAccount}})
	if got := strings.Join(tok.Scopes, ","); got != "read,account" {
		t.Errorf("an admin's read,account token: scopes %s", got)
	}
	_, err = acct.CreateTokenWith(ctx, api.TokenCreate{User: "alice"})
	wantCode(t, "an admin's account token makes alice a token", err, dspool.EForbidden, "only an admin")
	if _, err := acct.CreateTokenWith(ctx, api.TokenCreate{}); err != nil {
		t.Errorf("an admin's account token makes its own: %v", err)
	}
}
