package e2e_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestBehindLoadBalancer: `dspool up --trusted-proxy 127.0.0.2` behind a
// TLS-ending reverse proxy on 127.0.0.2 that appends to X-Forwarded-For and
// sets X-Forwarded-Proto and -Host. A browser on 127.0.0.3 that writes its
// own X-Forwarded-For logs in through it: the audit log has 127.0.0.3, the
// login cookie is Secure, the origin check takes the proxy's host. The same
// headers sent to the control plane directly change nothing. The proxy's
// health check (HEAD /readyz) needs no token.
func TestBehindLoadBalancer(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(83), Args: []string{"--trusted-proxy", "127.0.0.2"}})
	_, adaTok := up.createUser(t, "e2eproxy83")
	cmdIn(t, up.userEnv(adaTok), "correct horse battery\n", "user", "passwd")

	front := startProxy(t, up.URL)
	viaProxy := front.Client()
	tr := viaProxy.Transport.(*http.Transport)
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}).DialContext
	tr.TLSClientConfig.ServerName = "example.com" // httptest's certificate names it, not 127.0.0.2
	viaProxy.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	direct := &http.Client{CheckRedirect: viaProxy.CheckRedirect}

	login := func(t *testing.T, c *http.Client, base, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"username": {"e2eproxy83"}, "password": {"correct horse battery"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	tests := []struct {
		name       string
		client     *http.Client
		base       string
		wantRemote string // the audit entry's address; ending in ":", its prefix
		wantSecure bool
	}{
		{name: "through the trusted proxy", client: viaProxy, base: front.URL, wantRemote: "127.0.0.3", wantSecure: true},
		// Secure because the control plane itself serves HTTPS; the
		// headers are ignored (the audit has the peer's own address).
		{name: "straight to the control plane", client: direct, base: up.URL, wantRemote: "127.0.0.1:", wantSecure: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := login(t, tc.client, tc.base, tc.base)
			var cookie *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == "dspool_session" {
					cookie = c
				}
			}
			if resp.StatusCode != http.StatusSeeOther || cookie == nil || !cookie.HttpOnly || cookie.Secure != tc.wantSecure {
				t.Fatalf("login: %d, cookie %+v; want 303 and an HttpOnly cookie, Secure %v", resp.StatusCode, cookie, tc.wantSecure)
			}
			var es []*dspool.AuditEntry
			if err := json.Unmarshal([]byte(cliOK(t, up.env(), "audit", "--user", "e2eproxy83", "--action", dspool.AuditLoginWeb, "-o", "json")), &es); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range es {
				found = found || e.Remote == tc.wantRemote || strings.HasSuffix(tc.wantRemote, ":") && strings.HasPrefix(e.Remote, tc.wantRemote)
			}
			if !found {
				t.Fatalf("audit log of the logins: %s; want one from %s", describeAudit(es), tc.wantRemote)
			}
		})
	}
	if resp := login(t, viaProxy, front.URL, "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a login from another origin through the proxy: %d, want 403", resp.StatusCode)
	}
	req, _ := http.NewRequest("HEAD", front.URL+"/readyz", nil)
	resp, err := viaProxy.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /readyz through the proxy: %d, want 200", resp.StatusCode)
	}
}

// startProxy serves HTTPS on 127.0.0.2 and forwards to target from
// 127.0.0.2, as a load balancer does: it appends the client's address to
// X-Forwarded-For and sets X-Forwarded-Proto and -Host.
func startProxy(t *testing.T, target string) *httptest.Server {
	t.Helper()
	to, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	dial := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(to)
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, network, addr)
		}, TLSClientConfig: testCAs.config()},
	}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(proxy)
	ts.Listener.Close()
	ts.Listener = ln
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func describeAudit(es []*dspool.AuditEntry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString("\n  " + e.Action + " " + e.Remote + " " + e.Outcome)
	}
	return b.String()
}
