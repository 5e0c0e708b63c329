package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/web"
)

// Logins of browsers: the login form's answer (name and password), and the
// cookie that authenticates the dashboard's pages (package web), their API
// calls and /user/NAME/.
//
// The cookie is HttpOnly, SameSite=Lax, Secure under TLS, and only its hash
// is stored. A request the cookie authenticates that changes something must
// carry the login's XSRF token (X-XSRF-Token; the page has it), or, towards
// a Jupyter server, Jupyter's own double-submit pair (the _xsrf cookie and
// the X-XSRFToken header its pages send): Jupyter skips its own check for
// requests that carry its token, which the proxy adds.

const (
	sessionCookie = web.SessionCookie
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

// webLogins tells the dashboard (package web) who a browser is logged in
// as, and how the login form lets users in.
type webLogins struct{ s *Server }

func (l webLogins) WebLogin(r *http.Request) (*dspool.User, string, error) {
	if r.Header.Get("Authorization") != "" {
		return nil, "", dspool.Errorf(dspool.EUnauthorized, "the pool's pages take a browser's login, not an API token: log in")
	}
	u, login, err := l.s.caller(r)
	if err != nil {
		return nil, "", err
	}
	return u, login.xsrf, nil
}

func (l webLogins) LoginOffer() web.Login {
	var o web.Login
	if sso := l.s.sso; sso != nil {
		o.SSO, o.SSODown, o.NoPassword = sso.name, !sso.ready(), sso.cfg.NoPasswordLogin
	}
	return o
}

// loginNext is where a login may return to: a page of the dashboard or a
// user's Jupyter server; anything else (another site, //host, a scheme,
// the API) is "" and the login goes to the home page.
func loginNext(p string) string {
	if !web.Returnable(p) {
		return ""
	}
	return p
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	// A login from another site's form would log the browser in as the
	// attacker (login CSRF).
	if !s.sameOrigin(r) {
		s.dash.LoginPage(w, r, http.StatusForbidden, web.Login{Error: "This login form was sent from another site; use the pool's own page."})
		return
	}
	if s.sso != nil && s.sso.cfg.NoPasswordLogin {
		s.dash.LoginPage(w, r, http.StatusForbidden, web.Login{Error: "Password logins are off on this pool: sign in with " + s.sso.name + "."})
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
		s.dash.LoginPage(w, r, status, web.Login{Error: msg, Name: name, Next: next})
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
