package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
)

// user creates a user and returns a client with a new token of every scope.
func user(t *testing.T, p *dspooltest.Pool, name string, admin bool) (*dspool.User, *api.Client) {
	t.Helper()
	u, err := p.DB.CreateUser(context.Background(), name, admin)
	if err != nil {
		t.Fatal(err)
	}
	return u, p.ClientFor(u)
}

// tokenClient creates a token through the API as c and returns a client
// with it.
func tokenClient(t *testing.T, c *api.Client, req api.TokenCreate) (*api.Client, *api.NewToken) {
	t.Helper()
	tok, err := c.CreateTokenWith(context.Background(), req)
	if err != nil {
		t.Fatalf("create token %+v: %v", req, err)
	}
	return &api.Client{Server: c.Server, Token: tok.Secret}, tok
}

func wantCode(t *testing.T, what string, err error, code, says string) {
	t.Helper()
	if dspool.ErrorCode(err) != code || !strings.Contains(dspool.Message(err), says) {
		t.Errorf("%s: got %v, want %s saying %q", what, err, code, says)
	}
}

func TestTokenScopes(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	_, ada := user(t, p, "ada", false)

	ro, tok := tokenClient(t, ada, api.TokenCreate{Name: "dashboard", Scopes: []string{dspool.ScopeRead}})
	if tok.Name != "dashboard" || strings.Join(tok.Scopes, ",") != "read" || tok.ExpiresAt != nil {
		t.Fatalf("created %+v", tok.Token)
	}
	if _, err := ro.Jobs(ctx, api.JobQuery{}); err != nil {
		t.Errorf("a read token lists jobs: %v", err)
	}
	_, err := ro.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}}, 0)
	wantCode(t, "a read token submits", err, dspool.EForbidden, "lacks the jobs scope")
	wantCode(t, "a read token submits", err, dspool.EForbidden, "use a token that has it, made by a login or by a token with the account and jobs scopes")
	_, err = ro.CreateToken(ctx, "")
	wantCode(t, "a read token makes a token", err, dspool.EForbidden, "lacks the account scope")

	// A token never makes a token that can do more, or last longer.
	hour := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	acct, _ := tokenClient(t, ada, api.TokenCreate{Scopes: []string{dspool.ScopeRead, dspool.ScopeAdmin}, ExpiresAt: &hour})
	_, err = acct.CreateTokenWith(ctx, api.TokenCreate{Scopes: []string{dspool.ScopeJobs}})
	wantCode(t, "a read,admin token makes a jobs token", err, dspool.EForbidden, "cannot make a token with the jobs scope")
	day := hour.Add(24 * time.Hour)
	_, err = acct.CreateTokenWith(ctx, api.TokenCreate{ExpiresAt: &day})
	wantCode(t, "a token makes one that outlives it", err, dspool.EInvalid, "cannot outlive")
	wantCode(t, "a token makes one that outlives it", err, dspool.EInvalid, "give a shorter --expires, at most until")
	_, err = acct.CreateTokenWith(ctx, api.TokenCreate{Never: true})
	wantCode(t, "a token that expires makes one that never does", err, dspool.EInvalid, "cannot outlive the token that made it")
	if e := asError(err); e == nil || e.Field != "never" {
		t.Errorf("a token that expires makes one that never does: %v; want the field never", err)
	}
	if _, capped := tokenClient(t, acct, api.TokenCreate{ExpiresAt: &day, CapExpiry: true}); capped.ExpiresAt == nil || !capped.ExpiresAt.Equal(hour) {
		t.Errorf("a default expiry past the asking token's: %+v; want it cut to %s", capped.Token, hour)
	}
	_, child := tokenClient(t, acct, api.TokenCreate{})
	if strings.Join(child.Scopes, ",") != "read,account" || child.ExpiresAt == nil || !child.ExpiresAt.Equal(hour) {
		t.Errorf("a token's default child: %+v; want its scopes and expiry", child.Token)
	}
	past := time.Now().Add(-time.Minute)
	_, err = ada.CreateTokenWith(ctx, api.TokenCreate{ExpiresAt: &past})
	wantCode(t, "an expiry in the past", err, dspool.EInvalid, "not in the future")
	_, err = ada.CreateTokenWith(ctx, api.TokenCreate{Scopes: []string{"root"}})
	wantCode(t, "an unknown scope", err, dspool.EInvalid, "not a token scope")

	// Lists show what tokens are, never their secrets.
	resp, err := http.NewRequest("GET", p.URL+"/api/v1/tokens", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Set("Authorization", "Bearer "+ada.Token)
	r, err := http.DefaultClient.Do(resp)
	if err != nil {
		t.Fatal(err)
	}
	var list api.TokenList
	var raw json.RawMessage
	_ = json.NewDecoder(r.Body).Decode(&raw)
	r.Body.Close()
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Tokens) != 5 {
		t.Fatalf("ada's tokens: %s, %v; want 5", raw, err)
	}
	for _, secret := range []string{ada.Token, ro.Token, acct.Token} {
		if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "dsp_") {
			t.Fatalf("the token list shows a secret: %s", raw)
		}
	}
	_, bob := user(t, p, "bob", false)
	if l, err := bob.Tokens(ctx, "", false); err != nil || len(l) != 1 {
		t.Errorf("bob's tokens: %v, %v; want his one", l, err)
	}
	_, err = bob.Tokens(ctx, "ada", false)
	wantCode(t, "bob lists ada's tokens", err, dspool.EForbidden, "only an admin")
	_, err = bob.Tokens(ctx, "", true)
	wantCode(t, "bob lists every token", err, dspool.EForbidden, "only an admin")
	if l, err := p.Admin.Tokens(ctx, "", true); err != nil || len(l) != 7 {
		t.Errorf("every token: %d, %v; want 7", len(l), err)
	}
}

func TestRevokedTokenIsRefusedAtOnce(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	_, ada := user(t, p, "ada", false)
	other, tok := tokenClient(t, ada, api.TokenCreate{Name: "laptop"})
	if _, err := other.Whoami(ctx); err != nil { // now in the auth cache
		t.Fatal(err)
	}
	_, bob := user(t, p, "bob", false)
	_, err := bob.RevokeToken(ctx, tok.ID)
	wantCode(t, "bob revokes ada's token", err, dspool.ENotFound, "not found")
	got, err := ada.RevokeToken(ctx, tok.ID)
	if err != nil || got.RevokedAt == nil {
		t.Fatalf("revoke: %+v, %v", got, err)
	}
	_, err = other.Whoami(ctx)
	wantCode(t, "the revoked token, at once", err, dspool.EUnauthorized, "was revoked on")
	if again, err := ada.RevokeToken(ctx, tok.ID); err != nil || !again.RevokedAt.Equal(*got.RevokedAt) {
		t.Errorf("revoke again: %+v, %v; want the same revocation", again, err)
	}
	es, err := p.DB.Audit(ctx, store.AuditFilter{Action: dspool.AuditTokenRevoke})
	if err != nil || len(es) != 1 || es[0].Actor != "ada" || es[0].Target != "token "+itoa(tok.ID) {
		t.Errorf("audit of the revocation: %+v, %v; want one entry by ada", es, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestExpiredToken(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	ada, _ := user(t, p, "ada", false)
	secret := server.NewSecret("dsp_")
	soon := time.Now().Add(300 * time.Millisecond)
	tok, err := p.DB.AddToken(ctx, ada.ID, server.HashSecret(secret), "short", nil, &soon)
	if err != nil {
		t.Fatal(err)
	}
	c := &api.Client{Server: p.URL, Token: secret}
	if _, err := c.Whoami(ctx); err != nil {
		t.Fatalf("before it expires: %v", err)
	}
	var last error
	p.Eventually(5*time.Second, func() bool { _, last = c.Whoami(ctx); return last != nil }, "the token to expire")
	wantCode(t, "an expired token", last, dspool.EUnauthorized, "token "+itoa(tok.ID)+" (ada's) expired on")
	wantCode(t, "an expired token", last, dspool.EUnauthorized, "dspool token create")
	// Its use was recorded.
	p.Eventually(5*time.Second, func() bool {
		l, err := p.DB.Tokens(ctx, "ada")
		return err == nil && len(l) == 2 && l[1].ID == tok.ID && l[1].LastUsed != nil
	}, "the token's last use to be recorded")

	// A refused use is no use: a token that was expired when it came is
	// never "last used".
	stale := server.NewSecret("dsp_")
	past := time.Now().Add(-time.Hour)
	old, err := p.DB.AddToken(ctx, ada.ID, server.HashSecret(stale), "stale", nil, &past)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&api.Client{Server: p.URL, Token: stale}).Whoami(ctx)
	wantCode(t, "a token expired before its first use", err, dspool.EUnauthorized, "expired on")
	// The last use is written off the request's path: after a live token's
	// use is recorded, a refused one's would have been too.
	live := server.NewSecret("dsp_")
	marker, err := p.DB.AddToken(ctx, ada.ID, server.HashSecret(live), "live", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&api.Client{Server: p.URL, Token: live}).Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	var l []*dspool.Token
	p.Eventually(5*time.Second, func() bool {
		l, err = p.DB.Tokens(ctx, "ada")
		for _, x := range l {
			if x.ID == marker.ID {
				return x.LastUsed != nil
			}
		}
		return false
	}, "the live token's use to be recorded")
	for _, x := range l {
		if x.ID == old.ID && x.LastUsed != nil {
			t.Errorf("the expired token's refused use was recorded as its last use: %v", x.LastUsed)
		}
	}
}

// webLogin logs name in with password through the login form and returns
// the login cookie.
func webLogin(t *testing.T, p *dspooltest.Pool, name, password string) (*http.Cookie, int) {
	t.Helper()
	form := url.Values{"username": {name}, "password": {password}}
	req, _ := http.NewRequest("POST", p.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "dspool_session" && c.Value != "" {
			return c, resp.StatusCode
		}
	}
	return nil, resp.StatusCode
}

func cookieGet(t *testing.T, p *dspooltest.Pool, c *http.Cookie, path string) int {
	t.Helper()
	code, _ := cookieBody(t, p, c, path)
	return code
}

// cookieBody gets path with the login cookie c: the status and the body.
func cookieBody(t *testing.T, p *dspooltest.Pool, c *http.Cookie, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL+path, nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDisabledUserIsRefusedEverywhere(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	_, ada := user(t, p, "ada", false)
	if err := p.Admin.SetPassword(ctx, "ada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	cookie, code := webLogin(t, p, "ada", "correct horse battery")
	if cookie == nil || cookieGet(t, p, cookie, "/api/v1/whoami") != http.StatusOK {
		t.Fatalf("web login: %d", code)
	}
	if _, err := ada.Whoami(ctx); err != nil {
		t.Fatal(err)
	}

	_, err := ada.DisableUser(ctx, "ada")
	wantCode(t, "ada disables herself", err, dspool.EForbidden, "needs an admin")
	admin, _ := p.Admin.Whoami(ctx)
	_, err = p.Admin.DisableUser(ctx, admin.Name)
	wantCode(t, "the admin disables themself", err, dspool.EConflict, "cannot disable yourself")
	u, err := p.Admin.DisableUser(ctx, "ada")
	if err != nil || !u.Disabled {
		t.Fatalf("disable: %+v, %v", u, err)
	}

	_, err = ada.Whoami(ctx)
	wantCode(t, "a disabled user's token", err, dspool.EUnauthorized, "user ada is disabled")
	if got, body := cookieBody(t, p, cookie, "/api/v1/whoami"); got != http.StatusUnauthorized || !strings.Contains(body, "your account (user ada) is disabled: ask an admin") {
		t.Errorf("a disabled user's web login: %d %s, want 401 saying why", got, body)
	}
	if got, body := cookieBody(t, p, cookie, "/"); got != http.StatusOK || !strings.Contains(body, "Your account (user ada) is disabled: ask an admin to enable it.") {
		t.Errorf("a disabled user's page: %d %s; want the login form, saying why", got, body)
	}
	if c, code := webLogin(t, p, "ada", "correct horse battery"); c != nil || code != http.StatusUnauthorized {
		t.Errorf("a disabled user logs in with the right password: cookie %v, %d; want none, 401", c, code)
	}
	if u, err := p.Server.AuthenticatePassword(ctx, dspool.Login{User: "ada"}, "correct horse battery", "192.0.2.1:22"); dspool.ErrorCode(err) != dspool.EUnauthorized || u == nil || !u.Disabled {
		t.Errorf("a disabled user's password (SSH): %v, %v; want unauthorized, with the user for the gateway to say why", u, err)
	}
	if u, err := p.Server.AuthenticatePassword(ctx, dspool.Login{User: "ada"}, "wrong", "192.0.2.1:22"); u != nil || err == nil {
		t.Errorf("a disabled user's wrong password: %v, %v; want no user", u, err)
	}
	if us, err := p.Admin.Users(ctx); err != nil || !us[slicesIndex(us, "ada")].Disabled {
		t.Errorf("user list: %v, %v; want ada disabled", us, err)
	}

	if u, err := p.Admin.EnableUser(ctx, "ada"); err != nil || u.Disabled {
		t.Fatalf("enable: %+v, %v", u, err)
	}
	if _, err := ada.Whoami(ctx); err != nil {
		t.Errorf("ada's token after enable: %v", err)
	}
	if got, body := cookieBody(t, p, cookie, "/api/v1/whoami"); got != http.StatusUnauthorized || !strings.Contains(body, "your login has ended: log in again") {
		t.Errorf("ada's old web login after enable: %d %s, want 401 (enabling ended it), saying to log in again", got, body)
	}
	es, err := p.DB.Audit(ctx, store.AuditFilter{User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Action+":"+e.Outcome)
	}
	want := "password.set:success login.web:success user.disable:success login.web:failure user.enable:success"
	if strings.Join(got, " ") != want {
		t.Errorf("audit of ada: %q, want %q", strings.Join(got, " "), want)
	}
}

func slicesIndex(us []*dspool.User, name string) int {
	for i, u := range us {
		if u.Name == name {
			return i
		}
	}
	return -1
}

// fakeJupyter is a stand-in for a Jupyter server: it answers the status
// and kernels the agent asks for, and anything else with {}.
const fakeJupyter = `
import http.server, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
port, base = int(args["ServerApp.port"]), args["ServerApp.base_url"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"[]" if self.path.startswith(base + "api/kernels") else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
`

// notebookPool starts a pool whose node runs fakeJupyter as its users'
// Jupyter servers.
func notebookPool(t *testing.T, uidBase int) *dspooltest.Pool {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 for a stand-in Jupyter server")
	}
	p := dspooltest.New(t, dspooltest.Options{UIDBase: uidBase})
	script := filepath.Join(p.Share, "fake-jupyter.py")
	if err := os.WriteFile(script, []byte(fakeJupyter), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := &dspool.Pool{Name: "nb", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30},
		Work:     []dspool.Work{dspool.WorkInteractive},
		Sessions: &dspool.SessionSpec{CPUs: 500, Memory: 256 << 20, Default: true, Jupyter: []string{"/usr/bin/python3", script}}}
	if _, err := p.Admin.ApplyPools(context.Background(), []*dspool.Pool{pool}); err != nil {
		t.Fatal(err)
	}
	p.AddAgent("nb", agent.Config{Name: "nb-1", CPUs: 1000, Memory: 1 << 30})
	p.WaitReady("nb", 1)
	return p
}

// startNotebook starts c's Jupyter server and waits until it is ready.
func startNotebook(t *testing.T, p *dspooltest.Pool, c *api.Client) *dspool.Notebook {
	t.Helper()
	ctx := context.Background()
	if _, err := c.StartNotebook(ctx, ""); err != nil {
		t.Fatal(err)
	}
	var nb *dspool.Notebook
	p.Eventually(20*time.Second, func() bool {
		var err error
		nb, err = c.Notebook(ctx)
		if err != nil || nb.State == dspool.NotebookFailed {
			t.Fatalf("notebook: %+v, %v", nb, err)
		}
		return nb.State == dspool.NotebookReady
	}, "the Jupyter server to be ready")
	return nb
}

// TestRevokingATokenStopsItsNotebook: the Jupyter server a token started
// stops within 2 s of the token's revocation, and says why; disabling the
// user stops the one their web login started.
func TestRevokingATokenStopsItsNotebook(t *testing.T) {
	p := notebookPool(t, 45600)
	ctx := context.Background()
	_, ada := user(t, p, "ada", false)
	nbc, tok := tokenClient(t, ada, api.TokenCreate{Name: "notebooks", Scopes: []string{dspool.ScopeRead, dspool.ScopeSessions}})
	nb := startNotebook(t, p, nbc)
	if nb.StartedBy != "token "+itoa(tok.ID) {
		t.Errorf("started by %q, want the token", nb.StartedBy)
	}
	// Revoking another token of ada's leaves it alone.
	_, spare := tokenClient(t, ada, api.TokenCreate{})
	if _, err := ada.RevokeToken(ctx, spare.ID); err != nil {
		t.Fatal(err)
	}
	if cur, _ := ada.Notebook(ctx); cur.State != dspool.NotebookReady {
		t.Fatalf("revoking another token stopped it: %+v", cur)
	}

	revoked := time.Now()
	if _, err := ada.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	p.Eventually(2*time.Second, func() bool {
		cur, err := ada.Notebook(ctx)
		return err == nil && cur.State == dspool.NotebookStopped && strings.Contains(cur.Message, "was revoked by ada")
	}, "the token's Jupyter server to stop")
	p.Eventually(2*time.Second-time.Since(revoked), func() bool {
		ss, err := ada.Sessions(ctx, false, false)
		return err == nil && len(ss) == 0
	}, "its session to end")
	ended, _ := ada.Sessions(ctx, false, true)
	if len(ended) != 1 || !strings.Contains(ended[0].EndReason, "was revoked by ada") {
		t.Errorf("ended session: %+v; want the revocation as its reason", ended)
	}

	// A web login's server ends when the user is disabled.
	if err := p.Admin.SetPassword(ctx, "ada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	cookie, _ := webLogin(t, p, "ada", "correct horse battery")
	xsrf := pageXSRF(t, p, cookie)
	req, _ := http.NewRequest("POST", p.URL+"/api/v1/notebook", nil)
	req.AddCookie(cookie)
	req.Header.Set("X-XSRF-Token", xsrf)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start from the web page: %v %v", resp, err)
	}
	resp.Body.Close()
	p.Eventually(20*time.Second, func() bool {
		cur, err := ada.Notebook(ctx)
		return err == nil && cur.State == dspool.NotebookReady && cur.StartedBy == "web login"
	}, "the web login's Jupyter server to be ready")
	if _, err := p.Admin.DisableUser(ctx, "ada"); err != nil {
		t.Fatal(err)
	}
	admin, _ := p.Admin.Whoami(ctx)
	why := "user ada was disabled by " + admin.Name
	p.Eventually(2*time.Second, func() bool {
		ss, err := p.Admin.Sessions(ctx, true, true)
		return err == nil && len(ss) == 2 && ss[0].State == dspool.SessionEnded && ss[1].State == dspool.SessionEnded
	}, "a disabled user's session to end")
	if _, err := p.Admin.EnableUser(ctx, "ada"); err != nil {
		t.Fatal(err)
	}
	if cur, err := ada.Notebook(ctx); err != nil || cur.State != dspool.NotebookStopped || cur.Message != why {
		t.Errorf("a disabled user's Jupyter server: %+v, %v; want stopped because %s", cur, err, why)
	}
}

// pageXSRF reads the XSRF token of a web login from the pool's page.
func pageXSRF(t *testing.T, p *dspooltest.Pool, c *http.Cookie) string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL+"/", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	_, rest, ok := strings.Cut(b.String(), `<meta name="xsrf" content="`)
	tok, _, _ := strings.Cut(rest, `"`)
	if !ok || tok == "" {
		t.Fatalf("no XSRF token on the page")
	}
	return tok
}

// TestAuditOfAdminActions: what admins do to the pool and to others is in
// the audit log, with who did it and from where; what users do to their
// own sessions is not.
func TestAuditOfAdminActions(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	admin, _ := p.Admin.Whoami(ctx)
	if _, err := p.Admin.JoinToken(ctx, dspool.DefaultPool); err != nil {
		t.Fatal(err)
	}
	bu, err := p.Admin.CreateUser(ctx, api.UserCreate{Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	bob := p.ClientFor(bu)
	k, err := bob.AddKey(ctx, "", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILNxwjXkdHNlZvpJLaKpxlS8EJ1+QcKtHE6Kxu7/Qvth bob@laptop")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.SetPassword(ctx, "bob", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, id := range []string{"s-00000000000000aa", "s-00000000000000bb"} {
		if err := p.DB.CreateSession(ctx, &dspool.Session{ID: id, User: "bob", Kind: dspool.SessionSSH, Pool: dspool.DefaultPool,
			Node: "n-x", State: dspool.SessionActive, StartedAt: now, LastActivity: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.KillSession(ctx, "s-00000000000000aa"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admin.KillSession(ctx, "s-00000000000000bb"); err != nil {
		t.Fatal(err)
	}
	es, err := p.DB.Audit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if e.Outcome != dspool.AuditSuccess || e.Remote == "" {
			t.Errorf("entry %+v: want a success with a remote address", e)
		}
		got = append(got, e.Actor+" "+e.Action+" "+e.Target)
	}
	want := []string{
		admin.Name + " pool.apply pool default",
		admin.Name + " join_token.create pool default",
		admin.Name + " user.create user bob",
		"bob key.add key " + k.Fingerprint,
		admin.Name + " password.set user bob",
		admin.Name + " session.kill session s-00000000000000bb",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// What the log is asked for is checked.
	_, err = p.Admin.Audit(ctx, api.AuditQuery{Action: "bogus"})
	wantCode(t, "an unknown action", err, dspool.EInvalid, `"bogus" is not an audited action: give a family (audit, gateway, join_token, job, key, login,`)
	_, err = p.Admin.Audit(ctx, api.AuditQuery{User: "nobody"})
	wantCode(t, "an unknown user", err, dspool.EInvalid, "no user nobody")
	if es, err := p.Admin.Audit(ctx, api.AuditQuery{User: "bob", Action: "secret"}); err != nil || len(es) != 0 {
		t.Errorf("a known user with no such entries: %v, %v; want none, no error", es, err)
	}
}
