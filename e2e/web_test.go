package e2e_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestWebLogin: a browser's login (password, cookie), the XSRF rules for
// what the cookie authenticates, the page's start of a Jupyter server, and
// logout.
func TestWebLogin(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	up := startUp(t, upConfig{UIDBase: uidBase(19)})
	ada, adaTok := up.createUser(t, "e2eweb19")
	cmdIn(t, up.userEnv(adaTok), "correct horse battery\n", "user", "passwd")

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, hdr map[string]string, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, up.URL+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	login := func(pw string, hdr map[string]string) (*http.Response, string) {
		return do("POST", "/login", hdr, url.Values{"username": {ada.Name}, "password": {pw}}.Encode())
	}

	if resp, page := do("GET", "/", nil, ""); resp.StatusCode != 200 || !strings.Contains(page, `action="/login"`) ||
		resp.Header.Get("Content-Security-Policy") == "" || strings.Contains(page, "<style") {
		t.Fatalf("the login page: %d %q", resp.StatusCode, page)
	}
	if resp, css := do("GET", "/static/dash.css", nil, ""); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || css == "" {
		t.Fatalf("the page's styles: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// A browser opening a Jupyter URL without a login is sent to the page,
	// which is to return there.
	html := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	if resp, _ := do("GET", "/user/"+ada.Name+"/tree", html, ""); resp.StatusCode != http.StatusSeeOther ||
		resp.Header.Get("Location") != "/?next=%2Fuser%2F"+ada.Name+"%2Ftree" {
		t.Fatalf("a browser at /user/NAME/ without a login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, page := login("wrong horse battery", form); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 ||
		!strings.Contains(page, "Wrong user name or password") {
		t.Fatalf("wrong password: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	foreign := map[string]string{"Content-Type": form["Content-Type"], "Origin": "http://evil.example"}
	if resp, _ := login("correct horse battery", foreign); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("a login posted from another site: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp, _ := login("correct horse battery", form)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if c := resp.Cookies()[0]; c.Name != "dspool_session" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || !c.Secure {
		t.Fatalf("the login cookie: %+v; want HttpOnly, SameSite=Lax, Secure over HTTPS", c)
	}
	_, page := do("GET", "/", nil, "")
	m := regexp.MustCompile(`<meta name="xsrf" content="([^"]+)">`).FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, ada.Name) {
		t.Fatalf("the page after login: %q", page)
	}
	xsrf := m[1]

	// The cookie reads without more; it changes things only with the
	// page's XSRF token.
	if resp, body := do("GET", "/api/v1/notebook", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, `"stopped"`) {
		t.Fatalf("status by cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := do("POST", "/api/v1/notebook", nil, ""); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "XSRF") {
		t.Fatalf("start without the XSRF token: %d %s", resp.StatusCode, body)
	}
	// Logged in, with the server not running: to the page, to start it.
	if resp, _ := do("GET", "/user/"+ada.Name+"/tree", html, ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a browser at its stopped server: %d", resp.StatusCode)
	}
	if resp, body := do("POST", "/api/v1/notebook", map[string]string{"X-XSRF-Token": xsrf}, ""); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start with the XSRF token: %d %s", resp.StatusCode, body)
	}
	if resp, body := do("POST", "/api/v1/notebook", map[string]string{"X-XSRF-Token": xsrf, "Content-Type": "application/json"},
		`{"pool":"other"}`); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already runs in pool default") {
		t.Fatalf("a start in another pool while one runs: %d %s", resp.StatusCode, body)
	}
	eventually(t, 60*time.Second, "the server to be ready", func() bool {
		_, body := do("GET", "/api/v1/notebook", nil, "")
		return strings.Contains(body, `"ready"`)
	})

	// Through the proxy: reads by cookie; a change needs Jupyter's
	// double-submit token (the _xsrf cookie echoed in X-XSRFToken).
	base := "/user/" + ada.Name + "/"
	if resp, body := do("GET", base+"api/contents", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("the server by cookie: %d %s", resp.StatusCode, body)
	}
	// A browser at the server's root lands on the notebook page.
	if resp, _ := do("GET", base, html, ""); resp.StatusCode/100 != 3 || !strings.Contains(resp.Header.Get("Location"), base+"tree") {
		t.Fatalf("a browser at %s: %d to %q; want Jupyter's redirect to its tree page", base, resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do("POST", base+"api/contents", nil, `{"type":"notebook"}`); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a change without its XSRF token: %d", resp.StatusCode)
	}
	jar.SetCookies(mustURL(t, up.URL+base), []*http.Cookie{{Name: "_xsrf", Value: "pair-123", Path: base}})
	if resp, body := do("POST", base+"api/contents", map[string]string{"X-XSRFToken": "pair-123"}, `{"type":"notebook"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("a change with Jupyter's XSRF pair: %d %s", resp.StatusCode, body)
	}

	// Logout ends the cookie's login.
	if resp, _ := do("POST", "/logout", form, url.Values{"_xsrf": {xsrf}}.Encode()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/api/v1/notebook", nil, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
	var nb dspool.Notebook
	cliJSON(t, up.userEnv(adaTok), &nb, "notebook", "stop")
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
