package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/password"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
)

// The tests' requests come from 127.0.0.1: trusting it makes the test a
// load balancer; trusting 10.0.0.0/8 alone makes it a stranger who writes
// the headers of one.
var (
	asProxy    = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	notAProxy  = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
)

// proxiedPool is an in-process pool with trusted proxies and the user ada,
// whose password is "right one".
func proxiedPool(t *testing.T, proxies []netip.Prefix) *dspooltest.Pool {
	t.Helper()
	p := dspooltest.New(t, dspooltest.Options{TrustedProxies: proxies})
	ctx := context.Background()
	if _, err := p.DB.CreateUser(ctx, "ada", false); err != nil {
		t.Fatal(err)
	}
	hash, err := password.Hash("right one")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DB.SetPassword(ctx, "ada", hash); err != nil {
		t.Fatal(err)
	}
	return p
}

// postLogin posts the login form with the headers hdr.
func postLogin(t *testing.T, base, name, pw string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"username": {name}, "password": {pw}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func lastLogin(t *testing.T, db *store.DB) *dspool.AuditEntry {
	t.Helper()
	es := loginAudit(t, db)
	if len(es) == 0 {
		t.Fatal("no login in the audit log")
	}
	return es[len(es)-1]
}

// TestWebLoginBehindProxy: through a trusted proxy, the audit log has the
// client's address, the login cookie is Secure when the client speaks
// HTTPS, and the origin check compares with the host the client asked
// for; the same headers from anyone else change nothing.
func TestWebLoginBehindProxy(t *testing.T) {
	pools := map[bool]*dspooltest.Pool{true: proxiedPool(t, asProxy), false: proxiedPool(t, notAProxy)}
	tests := []struct {
		name       string
		trusted    bool
		hdr        map[string]string
		wantStatus int
		wantRemote string // "" means the connection's own (127.0.0.1:PORT)
		wantSecure bool
	}{
		{name: "client over https", trusted: true,
			hdr:        map[string]string{"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pool.example.com", "Origin": "https://pool.example.com"},
			wantStatus: http.StatusSeeOther, wantRemote: "198.51.100.7", wantSecure: true},
		{name: "client over plain http", trusted: true,
			hdr:        map[string]string{"X-Forwarded-For": "198.51.100.8"},
			wantStatus: http.StatusSeeOther, wantRemote: "198.51.100.8"},
		{name: "spoofed left-most entries", trusted: true,
			hdr:        map[string]string{"X-Forwarded-For": "127.0.0.1, 10.1.1.1, 198.51.100.9, 127.0.0.1", "X-Forwarded-Proto": "https"},
			wantStatus: http.StatusSeeOther, wantRemote: "198.51.100.9", wantSecure: true},
		{name: "foreign origin through the proxy", trusted: true,
			hdr:        map[string]string{"X-Forwarded-For": "198.51.100.10", "X-Forwarded-Host": "pool.example.com", "Origin": "https://evil.example"},
			wantStatus: http.StatusForbidden},
		{name: "untrusted peer's headers are ignored", trusted: false,
			hdr:        map[string]string{"X-Forwarded-For": "198.51.100.11", "X-Forwarded-Proto": "https"},
			wantStatus: http.StatusSeeOther},
		{name: "untrusted peer cannot lend itself a host", trusted: false,
			hdr:        map[string]string{"X-Forwarded-Host": "pool.example.com", "Origin": "https://pool.example.com"},
			wantStatus: http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pools[tc.trusted]
			resp := postLogin(t, p.URL, "ada", "right one", tc.hdr)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("login: got %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus != http.StatusSeeOther {
				return
			}
			var cookie *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == "dspool_session" {
					cookie = c
				}
			}
			if cookie == nil || cookie.Secure != tc.wantSecure {
				t.Errorf("login cookie %+v: got Secure %v, want %v", cookie, cookie != nil && cookie.Secure, tc.wantSecure)
			}
			got := lastLogin(t, p.DB).Remote
			if tc.wantRemote == "" && !strings.HasPrefix(got, "127.0.0.1:") || tc.wantRemote != "" && got != tc.wantRemote {
				t.Errorf("audit remote: got %q, want %q (\"\": the connection's)", got, tc.wantRemote)
			}
		})
	}
}

// TestPasswordThrottleBehindProxy: through a trusted proxy, password
// guesses are throttled per client, not per proxy (one client's guesses
// do not lock everyone out); a stranger writing X-Forwarded-For does not
// escape its own throttle by changing it.
func TestPasswordThrottleBehindProxy(t *testing.T) {
	tests := []struct {
		name    string
		proxies []netip.Prefix
		// from is the X-Forwarded-For of guess i (0..21: the 22nd finds
		// the door closed); other is that of a request after them.
		from      func(i int) string
		other     string
		wantOther int
	}{
		{name: "clients apart through a trusted proxy", proxies: asProxy,
			from: func(int) string { return "198.51.100.1" }, other: "198.51.100.2", wantOther: http.StatusUnauthorized},
		{name: "a stranger's rotating X-Forwarded-For", proxies: notAProxy,
			from: func(i int) string { return fmt.Sprintf("198.51.100.%d", i+1) }, other: "198.51.100.200", wantOther: http.StatusTooManyRequests},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := proxiedPool(t, tc.proxies)
			// Guesses at many users: the address's 20 free ones, and one
			// that closes the door.
			for i := range 21 {
				hdr := map[string]string{"X-Forwarded-For": tc.from(i)}
				if got := postLogin(t, p.URL, fmt.Sprintf("u%d", i), "wrong", hdr).StatusCode; got != http.StatusUnauthorized {
					t.Fatalf("guess %d: got %d, want 401", i+1, got)
				}
			}
			hdr := map[string]string{"X-Forwarded-For": tc.from(21)}
			if got := postLogin(t, p.URL, "ada", "right one", hdr).StatusCode; got != http.StatusTooManyRequests {
				t.Fatalf("the 22nd check from the guessing address: got %d, want 429", got)
			}
			hdr = map[string]string{"X-Forwarded-For": tc.other}
			if got := postLogin(t, p.URL, "grace", "wrong", hdr).StatusCode; got != tc.wantOther {
				t.Fatalf("a check from %s: got %d, want %d", tc.other, got, tc.wantOther)
			}
		})
	}
}

// TestSSOBehindProxy: the single sign-on's redirect URI is built from the
// host and scheme the client asked the load balancer for, the sign-in's
// cookies are Secure over HTTPS, and the audit entry has the client's
// address; from an untrusted peer, the same headers are ignored.
func TestSSOBehindProxy(t *testing.T) {
	hdr := map[string]string{"X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pool.example.com"}
	tests := []struct {
		name         string
		proxies      []netip.Prefix
		wantRedirect string // "" means the test server's own callback
		wantSecure   bool
		wantRemote   string // "" means the connection's own
	}{
		{name: "trusted proxy", proxies: asProxy, wantRedirect: "https://pool.example.com/login/oidc/callback", wantSecure: true, wantRemote: "203.0.113.50"},
		{name: "untrusted peer", proxies: notAProxy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newSSOPoolBehind(t, tc.proxies, nil, true)
			p.user("ada", "ada@example.com")
			b := newBrowser(t, p.URL)
			start := b.do("GET", "/login/oidc", hdr, "")
			auth, err := url.Parse(start.loc)
			if start.status != http.StatusFound || err != nil {
				t.Fatalf("GET /login/oidc: %d to %q", start.status, start.loc)
			}
			want := tc.wantRedirect
			if want == "" {
				want = p.URL + "/login/oidc/callback"
			}
			if got := auth.Query().Get("redirect_uri"); got != want {
				t.Fatalf("redirect_uri: got %q, want %q", got, want)
			}
			flow := cookieNamed(start.set, "dspool_oidc")
			if flow == nil || flow.Secure != tc.wantSecure {
				t.Fatalf("the sign-in's cookie %+v: want Secure %v", flow, tc.wantSecure)
			}
			// The provider sends the browser to the load balancer, which
			// brings it here; a browser sends a Secure cookie over HTTPS.
			back := b.get(start.loc)
			cb, _ := url.Parse(back.loc)
			cb.Scheme, cb.Host = "http", strings.TrimPrefix(p.URL, "http://")
			withCookie := map[string]string{"Cookie": flow.Name + "=" + flow.Value}
			for k, v := range hdr {
				withCookie[k] = v
			}
			res := b.do("GET", cb.String(), withCookie, "")
			login := cookieNamed(res.set, "dspool_session")
			if res.status != http.StatusSeeOther || login == nil || login.Secure != tc.wantSecure {
				t.Fatalf("callback: %d, login cookie %+v; want 303 and Secure %v\n%s\nlog:\n%s", res.status, login, tc.wantSecure, res.body, p.log())
			}
			e := p.lastAudit()
			if e == nil || tc.wantRemote == "" && !strings.HasPrefix(e.Remote, "127.0.0.1:") || tc.wantRemote != "" && e.Remote != tc.wantRemote {
				t.Errorf("audit entry %+v: want remote %q (\"\": the connection's)", e, tc.wantRemote)
			}
		})
	}
}

func cookieNamed(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name && c.Value != "" {
			return c
		}
	}
	return nil
}

// TestReadyzForLoadBalancers: /readyz and /healthz answer GET and HEAD
// without a token, and cheaply: they ask the store nothing (they answer
// the same with the store closed), so a health check every second costs
// no query and no write.
func TestReadyzForLoadBalancers(t *testing.T) {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "dspool.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Store: db}).Handler()
	db.Close()
	tests := []struct {
		name, method, path, wantBody string
	}{
		{name: "GET readyz", method: "GET", path: "/readyz", wantBody: "ok\n"},
		{name: "HEAD readyz", method: "HEAD", path: "/readyz"},
		{name: "GET healthz", method: "GET", path: "/healthz", wantBody: "ok\n"},
		{name: "HEAD healthz", method: "HEAD", path: "/healthz"},
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, hs.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != tc.wantBody {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, tc.wantBody)
			}
		})
	}
}
