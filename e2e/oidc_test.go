package e2e_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool/internal/oidctest"
)

// TestSSO: `dspool up` with single sign-on against a provider on loopback,
// password logins off. The page offers the provider alone; signing in there
// logs the browser in as the user whose email the admin recorded, and the
// login cookie reaches the API. The client secret, given in a file, shows
// in neither the log nor the process list.
func TestSSO(t *testing.T) {
	const secret = "e2e-client-secret-7f3a"
	idp := oidctest.New(t, oidctest.Options{ClientSecret: secret})
	dir := tempDir(t)
	secretFile := filepath.Join(dir, "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(37), Args: []string{"--oidc-issuer", idp.URL, "--oidc-client-id", idp.ClientID,
		"--oidc-client-secret-file", secretFile, "--oidc-name", "Test IdP", "--oidc-password-login=false"}})
	cliOK(t, up.env(), "user", "create", "e2esso37", "--email", "ada@example.com")

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, string) {
		t.Helper()
		if strings.HasPrefix(u, "/") {
			u = up.URL + u
		}
		resp, err := browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	eventually(t, 10*time.Second, "the page to offer single sign-on", func() bool {
		_, page := get("/")
		return strings.Contains(page, "Sign in with Test IdP")
	})
	if _, page := get("/"); strings.Contains(page, `action="/login"`) {
		t.Errorf("the page shows the password form with --oidc-password-login=false")
	}
	resp, _ := get("/login/oidc")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.URL+"/authorize?") {
		t.Fatalf("GET /login/oidc: %d to %q, want the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(resp.Header.Get("Location"))
	back := resp.Header.Get("Location")
	if cb, err := url.Parse(back); err != nil || cb.Path != "/login/oidc/callback" || cb.Query().Get("code") == "" {
		t.Fatalf("the provider sent the browser to %q, want the pool's callback with a code", back)
	}
	resp, page := get(back)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the callback: %d\n%s", resp.StatusCode, page)
	}
	if _, page := get("/"); !strings.Contains(page, "Logged in as <b>e2esso37</b>") {
		t.Fatalf("the page after signing in: %s", page)
	}
	if resp, who := get("/api/v1/whoami"); resp.StatusCode != 200 || !strings.Contains(who, `"name": "e2esso37"`) {
		t.Fatalf("whoami by the login cookie: %d %s", resp.StatusCode, who)
	}
	logs, _ := os.ReadFile(up.stderr)
	if !strings.Contains(string(logs), `msg="web login" user=e2esso37 via=oidc`) {
		t.Errorf("the log lacks the sign-in:\n%s", logs)
	}
	if strings.Contains(string(logs), secret) {
		t.Errorf("the log shows the client secret")
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(up.cmd.Process.Pid) + "/cmdline"); strings.Contains(string(cmdline), secret) {
		t.Errorf("the command line shows the client secret")
	}

	// Disabled, the user's login says why rather than that it ended.
	cliOK(t, up.env(), "user", "disable", "e2esso37")
	if _, page := get("/"); !strings.Contains(page, "Your account (user e2esso37) is disabled: ask an admin to enable it.") {
		t.Errorf("the page of a disabled user's login: %s", page)
	}
	if resp, who := get("/api/v1/whoami"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(who, "is disabled") {
		t.Errorf("whoami by a disabled user's login cookie: %d %s", resp.StatusCode, who)
	}
}
