package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/cli"
	"github.com/dspool/dspool/dspooltest"
)

// TestServerConfigOIDC: single sign-on settings the server cannot use stop
// it at start, naming the setting.
func TestServerConfigOIDC(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty-secret")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose-secret")
	if err := os.WriteFile(loose, []byte("hunter2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, oidc, want string
	}{
		{"secret in the config", "{issuer: https://sso.example.com, client_id: d, client_secret: hunter2}", "oidc.client_secret: a secret does not belong in the config"},
		{"no issuer", "{client_id: d}", "oidc.issuer: the single sign-on settings need the provider's issuer URL"},
		{"plain http", "{issuer: http://sso.example.com, client_id: d}", "oidc.issuer"},
		{"no client id", "{issuer: https://sso.example.com}", "oidc.client_id"},
		{"empty secret file", "{issuer: https://sso.example.com, client_id: d, client_secret_file: " + empty + "}", "is empty"},
		{"unknown setting", "{issuer: https://sso.example.com, client_id: d, scopes: [x]}", "oidc.scopes: is not a known field"},
		{"a secret file others may read", "{issuer: https://sso.example.com, client_id: d, client_secret_file: " + loose + "}", "oidc.client_secret_file: " + loose + " has mode 0644, so others may read the client secret: chmod 600 it"},
		{"a string for a list", "{issuer: https://sso.example.com, client_id: d, allowed_domains: example.com}", "oidc.allowed_domains: must be a list, not a string"},
		{"a name alone", "{name: Lab SSO}", "oidc.issuer: the single sign-on settings need the provider's issuer URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "server.yaml")
			y := "listen: 127.0.0.1:0\nssh_listen: \"off\"\ndata: " + filepath.Join(t.TempDir(), "data") + "\nshare: " + t.TempDir() + "\noidc: " + tc.oidc + "\n"
			if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
			if code := app.Run(context.Background(), []string{"server", "--config", cfg}); code == 0 || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure that says %q", code, errb.String(), tc.want)
			}
			if strings.Contains(errb.String(), "hunter2") {
				t.Errorf("the error shows the secret: %s", errb.String())
			}
		})
	}
}

// TestUpOIDCFlags: dspool up's single sign-on errors name its flags, not
// the config file's keys, and no --oidc-* flag is ignored alone.
func TestUpOIDCFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a name without an issuer", []string{"--oidc-name", "Lab SSO"}, "dspool: --oidc-issuer: the single sign-on settings need the provider's issuer URL"},
		{"no client id", []string{"--oidc-issuer", "https://sso.example.com"}, "dspool: --oidc-client-id: give the client id"},
		{"a bad domain", []string{"--oidc-issuer", "https://sso.example.com", "--oidc-client-id", "d", "--oidc-allowed-domains", "Example.com"}, "dspool: --oidc-allowed-domains: \"Example.com\" is not a domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			var out, errb bytes.Buffer
			app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
			args := append([]string{"up", "--data", data, "--listen", "127.0.0.1:0", "--ssh-listen", "off"}, tc.args...)
			if code := app.Run(context.Background(), args); code == 0 || !strings.HasPrefix(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure that says %q", code, errb.String(), tc.want)
			}
			if _, err := os.Stat(data); err == nil {
				t.Errorf("the refused start made its data directory")
			}
		})
	}
}

// TestUserEmailCommands: an admin records, lists and removes users' emails.
func TestUserEmailCommands(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 47500})
	if _, errs, code := run(t, p, p.Admin, "user", "create", "ada", "--email", "Ada@Example.com"); code != 0 {
		t.Fatalf("user create --email: %d %s", code, errs)
	}
	run(t, p, p.Admin, "user", "create", "bob")
	if _, errs, code := run(t, p, p.Admin, "user", "email", "bob", "bob@example.com"); code != 0 || !strings.Contains(errs, "email of bob set to bob@example.com") {
		t.Fatalf("user email: %d %s", code, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "user", "email", "bob", "ada@example.com"); code == 0 || !strings.Contains(errs, "another user has the email ada@example.com") {
		t.Errorf("a taken email: %d %s", code, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "user", "email", "bob"); code == 0 || !strings.Contains(errs, "--remove") {
		t.Errorf("neither an email nor --remove: %d %s", code, errs)
	}
	out, _, _ := run(t, p, p.Admin, "user", "list")
	if !strings.Contains(out, "EMAIL") || !strings.Contains(out, "ada@example.com") || !strings.Contains(out, "bob@example.com") {
		t.Errorf("user list:\n%s", out)
	}
	if _, errs, code := run(t, p, p.Admin, "user", "email", "bob", "--remove"); code != 0 {
		t.Fatalf("user email --remove: %d %s", code, errs)
	}
	if out, _, _ := run(t, p, p.Admin, "user", "list"); strings.Contains(out, "bob@example.com") {
		t.Errorf("user list after --remove:\n%s", out)
	}
}
