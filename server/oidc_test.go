package server_test

import (
	"bytes"
	"context"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/oidctest"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
)

// ssoPool is a control plane with single sign-on against a test provider,
// and a browser for it.
type ssoPool struct {
	t     *testing.T
	URL   string
	DB    *store.DB
	IdP   *oidctest.Provider
	Admin *api.Client

	logMu sync.Mutex
	logs  bytes.Buffer
	clock struct {
		sync.Mutex
		skew time.Duration
	}
}

func (p *ssoPool) Write(b []byte) (int, error) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.logs.Write(b)
}

func (p *ssoPool) log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.logs.String()
}

func (p *ssoPool) now() time.Time {
	p.clock.Lock()
	defer p.clock.Unlock()
	return time.Now().Add(p.clock.skew)
}

func (p *ssoPool) advance(d time.Duration) {
	p.clock.Lock()
	defer p.clock.Unlock()
	p.clock.skew += d
}

// newSSOPool starts a control plane whose single sign-on trusts a new test
// provider; edit changes its configuration. With ready, it returns once
// the provider is discovered.
func newSSOPool(t *testing.T, edit func(*server.OIDCConfig), ready bool) *ssoPool {
	t.Helper()
	return newSSOPoolBehind(t, nil, edit, ready)
}

// newSSOPoolBehind is newSSOPool with trusted proxies.
func newSSOPoolBehind(t *testing.T, proxies []netip.Prefix, edit func(*server.OIDCConfig), ready bool) *ssoPool {
	t.Helper()
	p := &ssoPool{t: t, IdP: oidctest.New(t, oidctest.Options{})}
	ctx, cancel := context.WithCancel(context.Background())
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "dspool.db"), store.Options{UIDBase: 46000})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &server.OIDCConfig{Issuer: p.IdP.URL, ClientID: p.IdP.ClientID, ClientSecret: p.IdP.ClientSecret, Name: "Example SSO"}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: db, OIDC: cfg, Now: p.now, TrustedProxies: proxies,
		Logger: slog.New(slog.NewTextHandler(p, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	hs := httptest.NewServer(srv.Handler())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		hs.Close()
		<-done
		db.Close()
	})
	p.URL, p.DB = hs.URL, db
	admin, err := db.CreateUser(ctx, "root46", true)
	if err != nil {
		t.Fatal(err)
	}
	secret := server.NewSecret("dsp_")
	if _, err := db.CreateToken(ctx, admin.ID, server.HashSecret(secret)); err != nil {
		t.Fatal(err)
	}
	p.Admin = &api.Client{Server: p.URL, Token: secret}
	if ready {
		if !pollFor(10*time.Second, func() bool { return strings.Contains(newBrowser(t, p.URL).get("/").body, `href="/login/oidc"`) }) {
			t.Fatalf("single sign-on not ready after 10s; log:\n%s", p.log())
		}
	}
	return p
}

// lastAudit is the newest sign-in in the audit log.
func (p *ssoPool) lastAudit() *dspool.AuditEntry {
	p.t.Helper()
	es, err := p.DB.Audit(context.Background(), store.AuditFilter{Action: dspool.AuditLoginOIDC})
	if err != nil {
		p.t.Fatal(err)
	}
	if len(es) == 0 {
		return nil
	}
	return es[len(es)-1]
}

// user creates a dspool user with the email single sign-on maps to it.
func (p *ssoPool) user(name, email string) *dspool.User {
	p.t.Helper()
	u, err := p.Admin.CreateUser(context.Background(), api.UserCreate{Name: name, Email: email})
	if err != nil {
		p.t.Fatal(err)
	}
	return u
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

type page struct {
	status int
	loc    string
	body   string
	set    []*http.Cookie
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, u string, hdr map[string]string, body string) page {
	b.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.base + u
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, loc: resp.Header.Get("Location"), body: string(out), set: resp.Cookies()}
}

func (b *browser) get(u string) page { return b.do("GET", u, nil, "") }

// signIn follows a sign-in from the pool's page through the provider, and
// returns the pool's answer to the callback; edit may change the callback
// URL first.
func (b *browser) signIn(edit func(q url.Values)) page {
	b.t.Helper()
	return b.signInFrom("/login/oidc", edit)
}

// signInFrom is signIn from the sign-in link path.
func (b *browser) signInFrom(path string, edit func(q url.Values)) page {
	b.t.Helper()
	start := b.get(path)
	if start.status != http.StatusFound || start.loc == "" {
		b.t.Fatalf("GET /login/oidc: %d to %q, want a redirect to the provider\n%s", start.status, start.loc, start.body)
	}
	auth, _ := url.Parse(start.loc)
	q := auth.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("nonce") == "" || q.Get("redirect_uri") != b.base+"/login/oidc/callback" {
		b.t.Fatalf("authorization request %s: want PKCE S256, a state, a nonce and the pool's own callback", start.loc)
	}
	var flow *http.Cookie
	for _, c := range start.set {
		if c.Name == "dspool_oidc" {
			flow = c
		}
	}
	if flow == nil || !flow.HttpOnly || flow.SameSite != http.SameSiteLaxMode || flow.MaxAge <= 0 || flow.MaxAge > 600 {
		b.t.Fatalf("the sign-in's cookie: %+v; want HttpOnly, SameSite=Lax, at most 10 minutes", flow)
	}
	back := b.get(start.loc)
	if back.status != http.StatusFound {
		b.t.Fatalf("the provider's /authorize: %d %s", back.status, back.body)
	}
	cb, _ := url.Parse(back.loc)
	if edit != nil {
		q := cb.Query()
		edit(q)
		cb.RawQuery = q.Encode()
	}
	return b.get(cb.String())
}

// TestSSOReturnsToTheDeepLink: a sign-in started from the login form of a
// page that asked for a login returns to that page; one asked to return to
// another site goes home.
func TestSSOReturnsToTheDeepLink(t *testing.T) {
	p := newSSOPool(t, nil, true)
	p.user("ada", "Ada@Example.com")
	b := newBrowser(t, p.URL)
	form := b.get("/?next=" + url.QueryEscape("/jobs?state=running"))
	link := regexp.MustCompile(`id="sso" href="([^"]+)"`).FindStringSubmatch(form.body)
	if link == nil || !strings.Contains(link[1], "next=") {
		t.Fatalf("the login form's sign-in link does not carry where to return:\n%s", form.body)
	}
	if res := b.signInFrom(html.UnescapeString(link[1]), nil); res.status != http.StatusSeeOther || res.loc != "/jobs?state=running" {
		t.Errorf("a sign-in from a deep link: %d to %q, want back to /jobs?state=running", res.status, res.loc)
	}
	if res := newBrowser(t, p.URL).signInFrom("/login/oidc?next="+url.QueryEscape("//evil.example/"), nil); res.status != http.StatusSeeOther || res.loc != "/" {
		t.Errorf("a sign-in asked to return to another site: %d to %q, want home", res.status, res.loc)
	}
}

func loginCookie(p page) *http.Cookie {
	for _, c := range p.set {
		if c.Name == "dspool_session" && c.Value != "" {
			return c
		}
	}
	return nil
}

// TestSSOLogin: a good sign-in lands on the page logged in as the user the
// verified email is recorded for, with the login (cookie and XSRF token) a
// password gives.
func TestSSOLogin(t *testing.T) {
	p := newSSOPool(t, nil, true)
	ada := p.user("ada", "Ada@Example.com")
	if ada.Email != "ada@example.com" {
		t.Errorf("user create --email: email %q, want it in lower case", ada.Email)
	}
	b := newBrowser(t, p.URL)
	front := b.get("/")
	if !strings.Contains(front.body, "Sign in with Example SSO") || !strings.Contains(front.body, `action="/login"`) {
		t.Fatalf("the login page: want the sign-in button and the password form:\n%s", front.body)
	}
	res := b.signIn(nil)
	c := loginCookie(res)
	if res.status != http.StatusSeeOther || res.loc != "/" || c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("callback: %d to %q, login cookie %+v; want / with an HttpOnly, SameSite=Lax login\n%s\nlog:\n%s", res.status, res.loc, c, res.body, p.log())
	}
	home := b.get("/")
	m := regexp.MustCompile(`<meta name="xsrf" content="([^"]+)">`).FindStringSubmatch(home.body)
	if !strings.Contains(home.body, "Logged in as <b>ada</b>") || m == nil {
		t.Fatalf("the page after signing in: %s", home.body)
	}
	who := b.get("/api/v1/whoami")
	if who.status != 200 || !strings.Contains(who.body, `"name": "ada"`) {
		t.Fatalf("whoami by the login cookie: %d %s", who.status, who.body)
	}
	if r := b.do("POST", "/api/v1/notebook", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("a change by cookie without the XSRF token: %d, want 403", r.status)
	}
	if r := b.do("POST", "/logout", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, url.Values{"_xsrf": {m[1]}}.Encode()); r.status != http.StatusSeeOther {
		t.Errorf("logout: %d", r.status)
	}
	if r := b.get("/api/v1/whoami"); r.status != http.StatusUnauthorized {
		t.Errorf("whoami after logout: %d, want 401", r.status)
	}
	if !strings.Contains(p.log(), `msg="web login" user=ada via=oidc`) {
		t.Errorf("log lacks the sign-in:\n%s", p.log())
	}
	if e := p.lastAudit(); e == nil || e.Actor != "ada" || e.Target != "user ada" || e.Outcome != dspool.AuditSuccess || !strings.Contains(e.Detail, "subject ada-1") {
		t.Errorf("audit entry of the sign-in: %+v", e)
	}
	for _, secret := range []string{p.IdP.ClientSecret, "eyJ"} {
		if strings.Contains(p.log(), secret) {
			t.Errorf("the log shows %q (a secret or a token):\n%s", secret, p.log())
		}
	}
}

// TestSSORefusals: every sign-in that fails a check is refused, with a page
// that says why and a log line with the reason; no login starts.
func TestSSORefusals(t *testing.T) {
	p := newSSOPool(t, nil, true)
	p.user("ada", "ada@example.com")
	ada := map[string]any{"sub": "ada-1", "email": "ada@example.com", "email_verified": true}
	for _, tc := range []struct {
		name     string
		setup    func()
		callback func(q url.Values)
		status   int
		reason   string
		page     string
	}{
		{name: "wrong issuer", setup: func() { p.IdP.Tamper(func(c map[string]any) { c["iss"] = "https://evil.example" }) },
			status: 401, reason: "wrong_issuer", page: `issued by &#34;https://evil.example&#34;`},
		{name: "wrong audience", setup: func() { p.IdP.Tamper(func(c map[string]any) { c["aud"] = "another-client" }) },
			status: 401, reason: "wrong_audience", page: "issued to another client"},
		{name: "expired", setup: func() {
			p.IdP.Tamper(func(c map[string]any) {
				c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
				c["exp"] = time.Now().Add(-time.Hour).Unix()
			})
		}, status: 401, reason: "expired", page: "has expired"},
		{name: "bad signature", setup: func() { p.IdP.SignWithForeignKey(true) }, status: 401, reason: "bad_signature", page: "not signed by its keys"},
		{name: "nonce mismatch", setup: func() { p.IdP.Tamper(func(c map[string]any) { c["nonce"] = "replayed" }) },
			status: 401, reason: "nonce_mismatch", page: "nonce mismatch"},
		{name: "state mismatch", callback: func(q url.Values) { q.Set("state", "forged") }, status: 400, reason: "state_mismatch", page: "state mismatch"},
		{name: "provider error", callback: func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") },
			status: 401, reason: "provider_error", page: "did not sign you in (access_denied)"},
		{name: "unverified email", setup: func() {
			p.IdP.SetIdentity(map[string]any{"sub": "ada-1", "email": "ada@example.com", "email_verified": false})
		}, status: 401, reason: "email_unverified", page: "is not verified"},
		{name: "no email", setup: func() { p.IdP.SetIdentity(map[string]any{"sub": "ada-1"}) }, status: 401, reason: "no_email", page: "no email address"},
		{name: "unknown identity", setup: func() {
			p.IdP.SetIdentity(map[string]any{"sub": "bob-1", "email": "bob@example.com", "email_verified": true})
		}, status: 403, reason: "not_linked", page: "not linked to a dspool user: ask an admin to run `dspool user create bob --email bob@example.com`"},
		{name: "code replayed", callback: func(q url.Values) { q.Set("code", "not-a-code") }, status: 502, reason: "code_exchange", page: "did not accept"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.IdP.Tamper(nil)
			p.IdP.SignWithForeignKey(false)
			p.IdP.SetIdentity(ada)
			if tc.setup != nil {
				tc.setup()
			}
			b := newBrowser(t, p.URL)
			before := len(p.log())
			res := b.signIn(tc.callback)
			if res.status != tc.status || loginCookie(res) != nil || !strings.Contains(res.body, tc.page) {
				t.Fatalf("got %d, login cookie %v; want %d, no login, and a page that says %q:\n%s", res.status, loginCookie(res), tc.status, tc.page, res.body)
			}
			if log := p.log()[before:]; !strings.Contains(log, "web login refused") || !strings.Contains(log, "reason="+tc.reason) {
				t.Errorf("the log has no refusal with reason=%s:\n%s", tc.reason, log)
			}
			if e := p.lastAudit(); e == nil || e.Outcome != dspool.AuditFailure || e.Actor != dspool.AuditAnonymous || !strings.Contains(e.Detail, "refused ("+tc.reason+")") {
				t.Errorf("audit entry of the refusal: %+v", e)
			}
			if strings.Contains(res.body, "eyJ") || strings.Contains(res.body, "goroutine") {
				t.Errorf("the page shows a token or a stack:\n%s", res.body)
			}
			if r := b.get("/api/v1/whoami"); r.status != http.StatusUnauthorized {
				t.Errorf("whoami after a refused sign-in: %d, want 401", r.status)
			}
		})
	}
	t.Run("disabled user", func(t *testing.T) {
		p.IdP.Tamper(nil)
		p.IdP.SetIdentity(ada)
		if _, err := p.Admin.DisableUser(context.Background(), "ada"); err != nil {
			t.Fatal(err)
		}
		defer p.Admin.EnableUser(context.Background(), "ada")
		res := newBrowser(t, p.URL).signIn(nil)
		if res.status != http.StatusForbidden || loginCookie(res) != nil || !strings.Contains(res.body, "is disabled") || !strings.Contains(p.log(), "reason=user_disabled") {
			t.Fatalf("a disabled user's sign-in: %d\n%s", res.status, res.body)
		}
	})
	t.Run("no flow cookie", func(t *testing.T) {
		res := newBrowser(t, p.URL).get("/login/oidc/callback?code=x&state=y")
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "not started from this browser") {
			t.Fatalf("a callback without its sign-in: %d\n%s", res.status, res.body)
		}
	})
	t.Run("flow expired", func(t *testing.T) {
		p.IdP.Tamper(nil)
		p.IdP.SetIdentity(ada)
		b := newBrowser(t, p.URL)
		res := b.signIn(func(url.Values) { p.advance(11 * time.Minute) })
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "longer than 10 minutes") || !strings.Contains(p.log(), "reason=flow_expired") {
			t.Fatalf("a sign-in that took 11 minutes: %d\n%s", res.status, res.body)
		}
	})
	// A refusal that is no error logs none.
	if strings.Contains(p.log(), "err=<nil>") {
		t.Errorf("the log names an error that is not there:\n%s", p.log())
	}
}

// TestSSOCreateUsers: with create_users, an identity that maps to no user
// gets one, with the next uid and its email; a taken name is not taken over.
func TestSSOCreateUsers(t *testing.T) {
	p := newSSOPool(t, func(c *server.OIDCConfig) { c.CreateUsers = true; c.AllowedDomains = []string{"example.com"} }, true)
	taken := p.user("ada", "")
	p.IdP.SetIdentity(map[string]any{"sub": "g-1", "email": "Grace.Hopper+pool@example.com", "email_verified": true})
	res := newBrowser(t, p.URL).signIn(nil)
	if res.status != http.StatusSeeOther || loginCookie(res) == nil {
		t.Fatalf("a new identity: %d\n%s\nlog:\n%s", res.status, res.body, p.log())
	}
	grace, err := p.DB.UserByEmail(context.Background(), "grace.hopper+pool@example.com")
	if err != nil || grace.Name != "grace-hopper" || grace.UID != taken.UID+1 || grace.Admin {
		t.Fatalf("created user: %+v %v; want grace-hopper, uid %d, not admin", grace, err, taken.UID+1)
	}
	created, err := p.DB.Audit(context.Background(), store.AuditFilter{Action: dspool.AuditUserCreate, User: "grace-hopper"})
	if err != nil || len(created) != 1 || created[0].Actor != dspool.AuditSystem || created[0].Target != "user grace-hopper" ||
		created[0].Detail != "created by single sign-on with Example SSO, subject g-1, email grace.hopper+pool@example.com" {
		t.Errorf("the user's creation in the audit log: %+v %v", created, err)
	}
	if res := newBrowser(t, p.URL).signIn(nil); res.status != http.StatusSeeOther {
		t.Fatalf("the same identity again: %d", res.status)
	}
	if users, _ := p.DB.Users(context.Background()); len(users) != 3 {
		t.Errorf("users after two sign-ins of one identity: %d, want 3 (root46, ada, grace-hopper)", len(users))
	}
	p.IdP.SetIdentity(map[string]any{"sub": "a-2", "email": "ada@example.com", "email_verified": true})
	if res := newBrowser(t, p.URL).signIn(nil); res.status != http.StatusForbidden || !strings.Contains(res.body, "A dspool user named ada exists") {
		t.Fatalf("an identity whose name is taken: %d\n%s", res.status, res.body)
	}
	p.IdP.SetIdentity(map[string]any{"sub": "m-1", "email": "mallory@evil.example", "email_verified": true})
	if res := newBrowser(t, p.URL).signIn(nil); res.status != http.StatusForbidden || !strings.Contains(p.log(), "reason=domain_not_allowed") {
		t.Fatalf("an identity outside the allowed domains: %d\n%s", res.status, res.body)
	}
}

// TestSSOClaimAndPasswordOff: another claim names the user directly; with
// password logins off the page has no form and /login refuses.
func TestSSOClaimAndPasswordOff(t *testing.T) {
	p := newSSOPool(t, func(c *server.OIDCConfig) { c.Claim = "preferred_username"; c.NoPasswordLogin = true }, true)
	p.user("ada", "")
	p.IdP.SetIdentity(map[string]any{"sub": "x", "preferred_username": "ada"})
	b := newBrowser(t, p.URL)
	if front := b.get("/"); strings.Contains(front.body, `action="/login"`) {
		t.Errorf("the page shows the password form with password logins off")
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if r := b.do("POST", "/login", form, "username=ada&password=whatever1"); r.status != http.StatusForbidden || !strings.Contains(r.body, "Password logins are off") {
		t.Errorf("a password login with them off: %d\n%s", r.status, r.body)
	}
	if res := b.signIn(nil); res.status != http.StatusSeeOther {
		t.Fatalf("sign-in by preferred_username: %d\n%s", res.status, res.body)
	}
	if who := b.get("/api/v1/whoami"); !strings.Contains(who.body, `"name": "ada"`) {
		t.Fatalf("whoami: %s", who.body)
	}
	p.IdP.SetIdentity(map[string]any{"sub": "y", "preferred_username": "eve"})
	if res := newBrowser(t, p.URL).signIn(nil); res.status != http.StatusForbidden || !strings.Contains(res.body, "`dspool user create eve`") {
		t.Fatalf("an unknown preferred_username: %d\n%s", res.status, res.body)
	}
}

// TestSSOUnavailable: a provider that cannot be reached does not stop the
// control plane; the page says single sign-on is unavailable, and keeps
// the password form.
func TestSSOUnavailable(t *testing.T) {
	dead := oidctest.New(t, oidctest.Options{})
	dead.Close()
	p := newSSOPool(t, func(c *server.OIDCConfig) { c.Issuer = dead.URL }, false)
	b := newBrowser(t, p.URL)
	front := b.get("/")
	if !strings.Contains(front.body, "unavailable right now") || !strings.Contains(front.body, `action="/login"`) {
		t.Fatalf("the page with the provider down:\n%s", front.body)
	}
	if r := b.get("/login/oidc"); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Single sign-on is unavailable") {
		t.Fatalf("GET /login/oidc with the provider down: %d\n%s", r.status, r.body)
	}
	if !pollFor(5*time.Second, func() bool { return strings.Contains(p.log(), "single sign-on unavailable") }) {
		t.Fatalf("no log line says why single sign-on is unavailable:\n%s", p.log())
	}
}

// pollFor checks cond every 10 ms until it holds (true) or timeout passes
// (false): the background discovery of a real server is what it waits for.
func pollFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// TestUserEmail: admins record emails; they are unique and normalized; the
// user list shows them; others may not set them.
func TestUserEmail(t *testing.T) {
	p := newSSOPool(t, nil, false)
	ctx := context.Background()
	ada := p.user("ada", "")
	p.user("bob", "bob@example.com")
	if err := p.Admin.SetUserEmail(ctx, "ada", "ADA@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.SetUserEmail(ctx, "ada", "bob@example.com"); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("another user's email: %v, want a conflict", err)
	}
	if _, err := p.Admin.CreateUser(ctx, api.UserCreate{Name: "carol", Email: "bob@example.com"}); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("create with another user's email: %v, want a conflict", err)
	}
	if err := p.Admin.SetUserEmail(ctx, "ada", "Ada <ada@example.com>"); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("an address with a display name: %v, want invalid", err)
	}
	if err := p.Admin.SetUserEmail(ctx, "nobody", "n@example.com"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("an unknown user: %v, want not found", err)
	}
	users, err := p.Admin.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, u := range users {
		got[u.Name] = u.Email
	}
	if got["ada"] != "ada@example.com" || got["bob"] != "bob@example.com" || got["root46"] != "" {
		t.Errorf("user list emails: %v", got)
	}
	secret := server.NewSecret("dsp_")
	if _, err := p.DB.CreateToken(ctx, ada.ID, server.HashSecret(secret)); err != nil {
		t.Fatal(err)
	}
	asAda := &api.Client{Server: p.URL, Token: secret}
	if err := asAda.SetUserEmail(ctx, "ada", "other@example.com"); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Errorf("a user setting an email: %v, want forbidden (admins link identities)", err)
	}
	if err := p.Admin.SetUserEmail(ctx, "ada", ""); err != nil {
		t.Errorf("removing an email: %v", err)
	}
}

// TestSSOOff: without single sign-on the routes answer 404 and the page is
// unchanged.
func TestSSOOff(t *testing.T) {
	srv := server.New(server.Config{})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	b := newBrowser(t, hs.URL)
	for _, path := range []string{"/login/oidc", "/login/oidc/callback?code=x&state=y"} {
		if r := b.get(path); r.status != http.StatusNotFound {
			t.Errorf("GET %s without single sign-on: %d, want 404", path, r.status)
		}
	}
}

func TestOIDCConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   server.OIDCConfig
		field string
	}{
		{"no issuer", server.OIDCConfig{ClientID: "x"}, "oidc.issuer"},
		{"http issuer", server.OIDCConfig{Issuer: "http://idp.example.com", ClientID: "x"}, "oidc.issuer"},
		{"not a URL", server.OIDCConfig{Issuer: "idp.example.com", ClientID: "x"}, "oidc.issuer"},
		{"no client id", server.OIDCConfig{Issuer: "https://idp.example.com"}, "oidc.client_id"},
		{"relative redirect", server.OIDCConfig{Issuer: "https://idp.example.com", ClientID: "x", RedirectURL: "/cb"}, "oidc.redirect_url"},
		{"bad claim", server.OIDCConfig{Issuer: "https://idp.example.com", ClientID: "x", Claim: "a b"}, "oidc.claim"},
		{"bad domain", server.OIDCConfig{Issuer: "https://idp.example.com", ClientID: "x", AllowedDomains: []string{"@example.com"}}, "oidc.allowed_domains[0]"},
		{"good", server.OIDCConfig{Issuer: "https://idp.example.com/realms/x", ClientID: "x", AllowedDomains: []string{"example.com"}}, ""},
		{"loopback http", server.OIDCConfig{Issuer: "http://127.0.0.1:5556", ClientID: "x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var e *dspool.Error
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.field != "" && (err == nil || !errors.As(err, &e) || e.Field != tc.field):
				t.Errorf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
