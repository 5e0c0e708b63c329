package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
)

// The browser front end: a login form (name and password), a page to start
// and stop your Jupyter server, and the cookie that authenticates the page's
// API calls and /user/NAME/.
//
// The cookie is HttpOnly, SameSite=Lax, Secure under TLS, and only its hash
// is stored. A request the cookie authenticates that changes something must
// carry the login's XSRF token (X-XSRF-Token; the page has it), or, towards
// a Jupyter server, Jupyter's own double-submit pair (the _xsrf cookie and
// the X-XSRFToken header its pages send): Jupyter skips its own check for
// requests that carry its token, which the proxy adds.

const (
	sessionCookie = "dspool_session"
	webLoginTTL   = 7 * 24 * time.Hour
)

type webLoginKey struct{}

// webLogin is how a request was authenticated by cookie.
type webLogin struct{ xsrf string }

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// caller returns the user a request acts for: by API token, else by login
// cookie (then with the login).
func (s *Server) caller(r *http.Request) (*dspool.User, *webLogin, error) {
	if tok := bearer(r); tok != "" {
		u, _, err := s.tokenCaller(r.Context(), tok)
		return u, nil, err
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, nil, dspool.Errorf(dspool.EUnauthorized, "no API token: give one with --token or DSPOOL_TOKEN (an admin makes one with `dspool token create --user NAME`)")
	}
	hash := HashSecret(c.Value)
	if u, login, ok := s.auth.get(hash); ok && login != nil {
		return u, login, nil
	}
	u, xsrf, err := s.db.WebSession(r.Context(), hash)
	if err != nil {
		return nil, nil, err
	}
	login := &webLogin{xsrf: xsrf}
	s.auth.put(hash, u, login)
	return u, login, nil
}

// authCache remembers for a few seconds who a token or login cookie is, so
// that every request through the Jupyter proxy (pages load dozens) does not
// read the store. Logout, revoking a token and disabling a user drop their
// entries at once (tokens.go); anything else that ends a credential takes
// effect within authTTL.
type authCache struct {
	mu      sync.Mutex
	m       map[string]authEntry
	dropped droppedCreds
}

type authEntry struct {
	user  *dspool.User
	login *webLogin
	tok   *dspool.Token // for an API token
	until time.Time
}

const (
	authTTL        = 5 * time.Second
	authCacheLimit = 10000
)

func (c *authCache) get(hash []byte) (*dspool.User, *webLogin, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[string(hash)]
	if !ok || time.Now().After(e.until) {
		return nil, nil, false
	}
	return e.user, e.login, true
}

func (c *authCache) put(hash []byte, u *dspool.User, login *webLogin) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.droppedLocked(u.ID, 0) {
		return
	}
	if c.m == nil || len(c.m) >= authCacheLimit {
		c.m = map[string]authEntry{}
	}
	c.m[string(hash)] = authEntry{user: u, login: login, until: time.Now().Add(authTTL)}
}

func (c *authCache) drop(hash []byte) {
	c.mu.Lock()
	delete(c.m, string(hash))
	c.mu.Unlock()
}

func safeMethod(m string) bool { return m == "GET" || m == "HEAD" || m == "OPTIONS" }

func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// checkXSRF refuses a state change authenticated by cookie without the
// login's XSRF token.
func checkXSRF(r *http.Request, login *webLogin) error {
	if login == nil || safeMethod(r.Method) {
		return nil
	}
	tok := r.Header.Get("X-XSRF-Token")
	if tok == "" {
		tok = r.PostFormValue("_xsrf")
	}
	if !sameToken(tok, login.xsrf) {
		return dspool.Errorf(dspool.EForbidden, "this request lacks the page's XSRF token: reload the page and try again")
	}
	return nil
}

// checkJupyterXSRF is Jupyter's own double-submit check, which Jupyter
// skips for the token-authenticated requests the proxy sends it.
func checkJupyterXSRF(r *http.Request, login *webLogin) error {
	if login == nil || safeMethod(r.Method) || isUpgrade(r) {
		return nil
	}
	c, err := r.Cookie("_xsrf")
	if err != nil || !sameToken(r.Header.Get("X-XSRFToken"), c.Value) {
		if sameToken(r.Header.Get("X-XSRF-Token"), login.xsrf) {
			return nil
		}
		return dspool.Errorf(dspool.EForbidden, "this request lacks its XSRF token (the _xsrf cookie and an X-XSRFToken header): reload the page")
	}
	return nil
}

// sameOrigin refuses a request whose Origin (when a browser sends one) is
// not this server as the client reached it.
func (s *Server) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	return err == nil && o.Host == s.client(r).Host
}

func (s *Server) setSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

type pageData struct {
	User  *dspool.User
	XSRF  string
	Error string
	Name  string
	// SSO names the identity provider of single sign-on ("" when off);
	// SSODown says it cannot be reached now.
	SSO        string
	SSODown    bool
	NoPassword bool
	// Next is where a login returns to: the page that asked for it.
	Next string
	// Profiles are the session profiles of the default interactive pool,
	// which the page offers for the Jupyter server.
	Profiles []dspool.SessionSize
}

// loginNext is where a login may return to: a user's Jupyter server
// (/user/NAME/...), the one page of the pool that sends a browser to log
// in; anything else (another site, //host, a scheme) is "" and the login
// goes to the pool's page.
func loginNext(p string) string {
	if len(p) > 2048 || !strings.HasPrefix(p, "/user/") || strings.ContainsAny(p, "\\\r\n\t") {
		return ""
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return ""
	}
	return p
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		s.fail(w, r, dspool.Errorf(dspool.ENotFound, "no page %s: the pool's page is /", r.URL.Path))
		return
	}
	s.setSecurityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	u, login, err := s.caller(r)
	if err != nil || login == nil {
		// A login that ended says why, unless there was none.
		why := ""
		if _, cerr := r.Cookie(sessionCookie); cerr == nil && dspool.ErrorCode(err) == dspool.EUnauthorized {
			why = sentence(dspool.Message(err))
		}
		_ = pageTmpl.Execute(w, s.loginPage(pageData{Error: why, Next: loginNext(r.URL.Query().Get("next"))}))
		return
	}
	var profiles []dspool.SessionSize
	if p, err := s.interactivePool(r.Context(), ""); err == nil {
		profiles = p.SessionSettings().Profiles
	}
	_ = pageTmpl.Execute(w, pageData{User: u, XSRF: login.xsrf, Profiles: profiles})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	s.setSecurityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// A login from another site's form would log the browser in as the
	// attacker (login CSRF).
	if !s.sameOrigin(r) {
		w.WriteHeader(http.StatusForbidden)
		_ = pageTmpl.Execute(w, s.loginPage(pageData{Error: "This login form was sent from another site; use the pool's own page."}))
		return
	}
	if s.sso != nil && s.sso.cfg.NoPasswordLogin {
		w.WriteHeader(http.StatusForbidden)
		_ = pageTmpl.Execute(w, s.loginPage(pageData{Error: "Password logins are off on this pool: sign in with " + s.sso.name + "."}))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	name, pw := r.PostFormValue("username"), r.PostFormValue("password")
	next := loginNext(r.PostFormValue("next"))
	login, err := dspool.ParseLogin(name)
	if err == nil && login.Pool != "" {
		err = dspool.Invalid("username", "give your user name alone")
	}
	var u *dspool.User
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		u, err = s.AuthenticatePassword(ctx, login, pw, s.client(r).Addr)
		cancel()
	}
	if err != nil {
		s.log.Info("web login refused", "user", name, "remote", s.client(r).Addr)
		s.audit(r, dspool.AuditAnonymous, dspool.AuditLoginWeb, "user "+name, dspool.AuditFailure, dspool.Message(err))
		status, msg := http.StatusUnauthorized, "Wrong user name or password. No password yet, or forgotten it? Ask your pool's admin to set one for you."
		var te *ThrottledError
		switch {
		case errors.As(err, &te):
			status, msg = http.StatusTooManyRequests, sentence(fmt.Sprintf("%s: try again in %d seconds", dspool.Message(err), te.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(te.Seconds()))
		case u != nil && u.Disabled: // the right password: its owner may know why
			msg = "Your account is disabled: ask an admin to enable it."
		}
		w.WriteHeader(status)
		_ = pageTmpl.Execute(w, s.loginPage(pageData{Error: msg, Name: name, Next: next}))
		return
	}
	if err := s.startWebSession(w, r, u, next); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("web login", "user", u.Name, "remote", s.client(r).Addr)
	s.audit(r, u.Name, dspool.AuditLoginWeb, "user "+u.Name, dspool.AuditSuccess, "password")
}

// startWebSession logs the browser in as u (a password or single sign-on
// checked who it is): the login cookie, then the page that asked for the
// login (next, from loginNext), or the pool's. Nothing is written when it
// fails.
func (s *Server) startWebSession(w http.ResponseWriter, r *http.Request, u *dspool.User, next string) error {
	secret, xsrf := newToken(), newToken()
	expires := s.cfg.Now().Add(webLoginTTL)
	if err := s.db.CreateWebSession(r.Context(), u.ID, HashSecret(secret), xsrf, expires); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: secret, Path: "/", Expires: expires,
		HttpOnly: true, Secure: s.client(r).Secure(), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, cmp.Or(next, "/"), http.StatusSeeOther)
	return nil
}

// sentence makes a message a sentence for the page: "Your login has
// ended: log in again."
func sentence(msg string) string {
	if msg == "" {
		return ""
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	_, login, err := s.caller(r)
	if err == nil && login != nil {
		if err := checkXSRF(r, login); err != nil {
			s.fail(w, r, err)
			return
		}
		c, _ := r.Cookie(sessionCookie)
		s.auth.drop(HashSecret(c.Value))
		_ = s.db.DeleteWebSession(r.Context(), HashSecret(c.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.client(r).Secure(), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(pageScript))
}

// The page's styles are a file of their own: the Content-Security-Policy
// allows no inline style.
func (s *Server) serveStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(pageStyle))
}

const pageStyle = `body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} label{display:block;margin:.6rem 0 .2rem} input{font:inherit;padding:.3rem;width:16rem}
button{font:inherit;padding:.35rem 1rem;margin:.6rem .4rem 0 0;cursor:pointer} .error{color:#a00}
a.button{display:inline-block;padding:.35rem 1rem;border:1px solid #767676;border-radius:3px;background:#efefef;color:inherit;text-decoration:none}
#state{font-weight:600} .muted{color:#666} pre{white-space:pre-wrap;background:#f4f4f4;padding:.5rem;font-size:.8rem}
`

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dspool</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .User}}<meta name="xsrf" content="{{.XSRF}}"><meta name="user" content="{{.User.Name}}">{{end}}
<link rel="stylesheet" href="/static/page.css"></head><body>
<h1>dspool</h1>
{{if .User}}
<p>Logged in as <b>{{.User.Name}}</b>.</p>
<h2>Your Jupyter server</h2>
<p>State: <span id="state">…</span> <span id="where" class="muted"></span></p>
<p id="progress" class="muted"></p>
<p id="idle" class="error"></p>
{{if .Profiles}}<label for="profile">Size</label><select id="profile"><option value="">the pool's own</option>
{{range .Profiles}}<option value="{{.Name}}">{{.Name}}: {{.String}}{{if .Description}} ({{.Description}}){{end}}</option>{{end}}</select>{{end}}
<p><button id="start">Start my server</button><button id="stop">Stop</button> <a id="open" hidden>Open</a></p>
<pre id="message" hidden></pre>
<form method="post" action="/logout"><input type="hidden" name="_xsrf" value="{{.XSRF}}"><button>Log out</button></form>
<script src="/static/page.js"></script>
{{else}}
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{if .SSO}}{{if .SSODown}}<p class="muted">Single sign-on with {{.SSO}} is unavailable right now: try again in a minute.</p>
{{else}}<p><a class="button" id="sso" href="/login/oidc">Sign in with {{.SSO}}</a></p>{{end}}{{end}}
{{if not .NoPassword}}<form method="post" action="/login">
<label for="username">User name</label><input id="username" name="username" value="{{.Name}}" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
{{if .Next}}<input type="hidden" name="next" value="{{.Next}}">{{end}}
<p><button>Log in</button></p>
</form>{{end}}
{{end}}
</body></html>
`))

const pageScript = `"use strict";
const xsrf = document.querySelector('meta[name=xsrf]').content;
const $ = (id) => document.getElementById(id);
let began = 0;
function show(nb) {
  $('state').textContent = nb.state;
  $('where').textContent = nb.node_name ? 'on node ' + nb.node_name + ' of pool ' + nb.pool : '';
  const running = nb.state === 'starting' || nb.state === 'ready';
  $('start').disabled = running;
  $('stop').disabled = !running;
  $('open').hidden = nb.state !== 'ready';
  $('open').href = nb.url;
  $('progress').textContent = nb.state === 'starting' ? 'starting, ' + Math.round((Date.now() - began) / 1000) + ' s' : '';
  $('message').hidden = !nb.message;
  $('message').textContent = nb.message || '';
  $('idle').textContent = '';
  if (nb.state === 'ready' && nb.stops_at && nb.idle_since) {
    const left = new Date(nb.stops_at) - Date.now(), period = new Date(nb.stops_at) - new Date(nb.idle_since);
    if (left < Math.min(10 * 60 * 1000, period / 4)) {
      $('idle').textContent = 'Unused since ' + new Date(nb.idle_since).toLocaleTimeString() +
        ': it will be stopped in ' + Math.max(0, Math.round(left / 1000)) + ' s unless a kernel runs or you use it.';
    }
  }
}
async function api(method) {
  const opts = {method, headers: {'X-XSRF-Token': xsrf}, credentials: 'same-origin'};
  const profile = $('profile');
  if (method === 'POST' && profile && profile.value) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify({profile: profile.value});
  }
  const r = await fetch('/api/v1/notebook', opts);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
  return body;
}
async function poll() {
  try {
    const nb = await api('GET');
    show(nb);
    setTimeout(poll, nb.state === 'starting' ? 500 : 5000);
  } catch (e) {
    $('message').hidden = false;
    $('message').textContent = e.message;
    setTimeout(poll, 5000); // the pool may be restarting: try again
  }
}
$('start').onclick = async () => {
  began = Date.now();
  try { show(await api('POST')); poll(); } catch (e) { $('message').hidden = false; $('message').textContent = e.message; }
};
$('stop').onclick = async () => {
  try { show(await api('DELETE')); } catch (e) { $('message').hidden = false; $('message').textContent = e.message; }
};
began = Date.now();
poll();
`
