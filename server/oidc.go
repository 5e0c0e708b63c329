package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/forwarded"
	"github.com/dspool/dspool/web"
	"golang.org/x/oauth2"
)

// Single sign-on for the web front end with an OpenID Connect provider: the
// authorization code flow with PKCE, its state, nonce and code verifier
// kept in a short-lived cookie that this server signs. The callback checks
// the ID token with go-oidc (signature, issuer, audience, expiry), then the
// nonce, maps the identity to an existing dspool user (see ssoUser) and
// starts the same web login a password does.
//
// Nothing the provider hands over (code, tokens) is logged or shown; the
// client secret is never logged.

// OIDCConfig turns on single sign-on. Zero values mean the defaults; Issuer
// and ClientID are required.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL: https, or http on loopback.
	Issuer   string
	ClientID string
	// ClientSecret is empty for a public client (PKCE alone).
	ClientSecret string
	// RedirectURL is where the provider sends the browser back (default:
	// /login/oidc/callback on the address the browser used).
	RedirectURL string
	// Name is shown on the page: "Sign in with NAME" (default: the
	// issuer's host).
	Name string
	// Claim names the dspool user (default "email"): "email" maps a
	// verified email to the user with that recorded email; any other claim
	// (preferred_username...) is the user's name itself.
	Claim string
	// AllowedDomains, when set, admits only verified emails in them.
	AllowedDomains []string
	// CreateUsers creates a user, with the next uid, for an identity that
	// maps to none.
	CreateUsers bool
	// NoPasswordLogin takes the password form off the web page.
	NoPasswordLogin bool
	// HTTPClient reaches the provider (default: one with a 10 s timeout).
	HTTPClient *http.Client
}

// Validate checks a configuration before a server starts with it.
func (c *OIDCConfig) Validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		return dspool.Invalid("oidc.issuer", "give the identity provider's issuer URL, e.g. https://accounts.example.com")
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return dspool.Invalid("oidc.issuer", "%q is not an issuer URL: give e.g. https://accounts.example.com", c.Issuer)
	case u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())):
		return dspool.Invalid("oidc.issuer", "%q: the issuer must be https (http only on loopback, for tests)", c.Issuer)
	case c.ClientID == "":
		return dspool.Invalid("oidc.client_id", "give the client id registered at the identity provider")
	}
	if c.RedirectURL != "" {
		r, err := url.Parse(c.RedirectURL)
		if err != nil || (r.Scheme != "https" && r.Scheme != "http") || r.Host == "" {
			return dspool.Invalid("oidc.redirect_url", "%q is not an absolute http(s) URL: give e.g. https://pool.example.com/login/oidc/callback", c.RedirectURL)
		}
	}
	if c.Claim != "" && !claimRE(c.Claim) {
		return dspool.Invalid("oidc.claim", "%q is not a claim name: e.g. email or preferred_username", c.Claim)
	}
	for i, d := range c.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@ /") || d != strings.ToLower(d) {
			return dspool.Invalid(fmt.Sprintf("oidc.allowed_domains[%d]", i), "%q is not a domain: give it in lower case, e.g. example.com", d)
		}
	}
	return nil
}

func claimRE(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == ':') {
			return false
		}
	}
	return len(s) <= 100
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

const (
	ssoCookie   = "dspool_oidc"
	ssoFlowTTL  = 10 * time.Minute
	ssoCallback = OIDCCallbackPath
)

// OIDCCallbackPath is where the provider sends browsers back, on this
// server's own address unless OIDCConfig.RedirectURL says otherwise.
const OIDCCallbackPath = "/login/oidc/callback"

// sso is the single sign-on of a server; nil when it has none.
type sso struct {
	cfg  OIDCConfig
	name string
	key  []byte // signs flow cookies; a restart ends the sign-ins under way

	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
	// signature checks only the signature, to tell why a token that
	// failed verification failed.
	signature *oidc.IDTokenVerifier
	lastErr   error
}

func newSSO(cfg *OIDCConfig) *sso {
	if cfg == nil {
		return nil
	}
	c := *cfg
	if c.Claim == "" {
		c.Claim = "email"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	name := c.Name
	if name == "" {
		if u, err := url.Parse(c.Issuer); err == nil && u.Host != "" {
			name = u.Host
		} else {
			name = "single sign-on"
		}
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &sso{cfg: c, name: name, key: key}
}

func (p *sso) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.cfg.HTTPClient)
}

// discover fetches the provider's configuration (its endpoints and keys).
func (p *sso) discover(ctx context.Context, now func() time.Time) error {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(p.clientContext(dctx), p.cfg.Issuer)
	if err != nil {
		return err
	}
	keys := p.clientContext(context.Background())
	p.mu.Lock()
	defer p.mu.Unlock()
	p.oauth = &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: prov.Endpoint(),
		RedirectURL: p.cfg.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	p.verifier = prov.VerifierContext(keys, &oidc.Config{ClientID: p.cfg.ClientID, Now: now})
	p.signature = prov.VerifierContext(keys, &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SkipIssuerCheck: true})
	p.lastErr = nil
	return nil
}

// run discovers the provider, retrying with a growing pause (up to a
// minute) while it cannot be reached, so that the control plane starts
// without it.
func (p *sso) run(ctx context.Context, s *Server) {
	pause := time.Second
	for {
		err := p.discover(ctx, s.cfg.Now)
		if err == nil {
			s.log.Info("single sign-on ready", "issuer", p.cfg.Issuer, "client_id", p.cfg.ClientID)
			return
		}
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.lastErr = err
		p.mu.Unlock()
		s.log.Error("single sign-on unavailable: cannot discover the identity provider; retrying", "issuer", p.cfg.Issuer,
			"retry_in", pause.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
}

func (p *sso) client() (*oauth2.Config, *oidc.IDTokenVerifier, *oidc.IDTokenVerifier) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.oauth, p.verifier, p.signature
}

func (p *sso) ready() bool {
	c, _, _ := p.client()
	return c != nil
}

// redirectURL is where the provider sends the browser back: the
// configured URL, or this server as the client reached it.
func (p *sso) redirectURL(c forwarded.Client) string {
	if p.cfg.RedirectURL != "" {
		return p.cfg.RedirectURL
	}
	return c.Scheme + "://" + c.Host + ssoCallback
}

// ssoFlow is what the flow cookie carries from the start of a sign-in to its
// callback.
type ssoFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Redirect string `json:"r"`
	Expires  int64  `json:"e"`
	// Next is the page that asked for the login (loginNext), where the
	// sign-in returns.
	Next string `json:"x,omitempty"`
}

func (p *sso) seal(f ssoFlow) string {
	b, _ := json.Marshal(f)
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + base64.RawURLEncoding.EncodeToString(p.mac(body))
}

func (p *sso) mac(body string) []byte {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

func (p *sso) open(v string, now time.Time) (ssoFlow, *ssoRefusal) {
	var f ssoFlow
	body, sig, ok := strings.Cut(v, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(mac, p.mac(body)) {
		return f, refuse("flow_invalid", http.StatusBadRequest, "This sign-in was not started by this browser on this pool (or the pool restarted since): start again from the pool's page.")
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(b, &f) != nil {
		return f, refuse("flow_invalid", http.StatusBadRequest, "This sign-in's cookie is damaged: start again from the pool's page.")
	}
	if now.Unix() > f.Expires {
		return f, refuse("flow_expired", http.StatusBadRequest, "This sign-in took longer than 10 minutes: start again from the pool's page.")
	}
	return f, nil
}

func (p *sso) flowCookie(c forwarded.Client, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: ssoCookie, Value: value, Path: "/login/oidc", MaxAge: maxAge,
		HttpOnly: true, Secure: c.Secure(), SameSite: http.SameSiteLaxMode}
}

// ssoRefusal is why a sign-in was refused: a short reason for the log and
// the audit, and what the page tells the user.
type ssoRefusal struct {
	reason string
	status int
	msg    string
	// err is the detail for the log (never a token).
	err error
}

func (e *ssoRefusal) Error() string { return e.reason + ": " + e.msg }

func refuse(reason string, status int, format string, args ...any) *ssoRefusal {
	return &ssoRefusal{reason: reason, status: status, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) ssoPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.dash.LoginPage(w, r, status, web.Login{Error: msg})
}

// ssoStart sends the browser to the provider.
func (s *Server) ssoStart(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		s.fail(w, r, dspool.Errorf(dspool.ENotFound, "single sign-on is not configured on this pool: log in with your password"))
		return
	}
	oc, _, _ := s.sso.client()
	if oc == nil {
		s.ssoPage(w, r, http.StatusServiceUnavailable, "Single sign-on is unavailable: the pool cannot reach "+s.sso.name+" right now. Try again in a minute.")
		return
	}
	f := ssoFlow{State: newToken(), Nonce: newToken(), Verifier: oauth2.GenerateVerifier(), Redirect: s.sso.redirectURL(s.client(r)),
		Expires: s.cfg.Now().Add(ssoFlowTTL).Unix(), Next: loginNext(r.URL.Query().Get("next"))}
	http.SetCookie(w, s.sso.flowCookie(s.client(r), s.sso.seal(f), int(ssoFlowTTL/time.Second)))
	c := *oc
	c.RedirectURL = f.Redirect
	web.SetSecurityHeaders(w)
	http.Redirect(w, r, c.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

// ssoFinish handles the provider's answer: the browser comes back with a
// code (or an error) and the flow cookie.
func (s *Server) ssoFinish(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		s.fail(w, r, dspool.Errorf(dspool.ENotFound, "single sign-on is not configured on this pool: log in with your password"))
		return
	}
	// The flow is single-use, whatever its outcome.
	http.SetCookie(w, s.sso.flowCookie(s.client(r), "", -1))
	id, err := s.ssoIdentity(r)
	var u *dspool.User
	if err == nil {
		u, err = s.ssoUser(r.Context(), id)
	}
	if err != nil {
		var e *ssoRefusal
		if !errors.As(err, &e) {
			e = &ssoRefusal{reason: "internal", status: http.StatusInternalServerError, msg: "The sign-in failed inside the pool: see its log, or try again.", err: err}
		}
		attrs := []any{"via", "oidc", "reason", e.reason, "email", id.email, "subject", id.subject, "remote", s.client(r).Addr}
		if e.err != nil {
			attrs = append(attrs, "err", e.err)
		}
		s.log.Info("web login refused", attrs...)
		s.recordSSO(r, nil, id, e.reason)
		s.ssoPage(w, r, e.status, e.msg)
		return
	}
	if err := s.startWebSession(w, r, u, id.next); err != nil {
		s.log.Info("web login refused", "via", "oidc", "reason", "no_session", "user", u.Name, "remote", s.client(r).Addr, "err", err)
		s.recordSSO(r, nil, id, "no_session")
		why := "see the pool's log"
		var e *dspool.Error
		if errors.As(err, &e) && e.Code != dspool.EInternal {
			why = e.Message
		}
		s.ssoPage(w, r, api.HTTPStatus(dspool.ErrorCode(err)), "You are signed in at "+s.sso.name+", but the pool could not log you in: "+why+".")
		return
	}
	s.log.Info("web login", "user", u.Name, "via", "oidc", "subject", id.subject, "remote", s.client(r).Addr)
	s.recordSSO(r, u, id, "")
}

// ssoIdentity is who the provider says signed in: checked, but not yet
// mapped to a user.
type ssoIdentity struct {
	subject, email string
	emailVerified  bool
	claims         map[string]any
	next           string // where the sign-in returns (its flow's Next)
}

// ssoIdentity checks the callback against its flow and the provider's ID
// token, and returns the identity in it.
func (s *Server) ssoIdentity(r *http.Request) (ssoIdentity, error) {
	var id ssoIdentity
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		desc := q.Get("error_description")
		if len(desc) > 200 {
			desc = desc[:200]
		}
		return id, refuse("provider_error", http.StatusUnauthorized, "%s did not sign you in (%s%s): start again from the pool's page.",
			s.sso.name, e, strings.TrimSpace(" "+desc))
	}
	c, err := r.Cookie(ssoCookie)
	if err != nil || c.Value == "" {
		return id, refuse("no_flow", http.StatusBadRequest, "This sign-in was not started from this browser (or its cookie expired): start again from the pool's page.")
	}
	flow, bad := s.sso.open(c.Value, s.cfg.Now())
	if bad != nil {
		return id, bad
	}
	if !sameToken(q.Get("state"), flow.State) {
		return id, refuse("state_mismatch", http.StatusBadRequest, "This answer from %s does not belong to the sign-in this browser started (state mismatch): start again from the pool's page.", s.sso.name)
	}
	code := q.Get("code")
	if code == "" {
		return id, refuse("no_code", http.StatusBadRequest, "%s sent no authorization code: start again from the pool's page.", s.sso.name)
	}
	oc, verifier, sigOnly := s.sso.client()
	if oc == nil {
		return id, refuse("unavailable", http.StatusServiceUnavailable, "Single sign-on is unavailable: the pool cannot reach %s right now.", s.sso.name)
	}
	conf := *oc
	conf.RedirectURL = flow.Redirect
	ctx, cancel := context.WithTimeout(s.sso.clientContext(r.Context()), 15*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		e := refuse("code_exchange", http.StatusBadGateway, "%s did not accept this sign-in's code: start again from the pool's page.", s.sso.name)
		e.err = exchangeError(err)
		return id, e
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return id, refuse("no_id_token", http.StatusBadGateway, "%s sent no ID token: is it an OpenID Connect provider, and is the openid scope allowed for this client?", s.sso.name)
	}
	t, err := verifier.Verify(ctx, raw)
	if err != nil {
		e := s.whyInvalid(ctx, sigOnly, raw, err)
		e.err = err
		return id, e
	}
	if len(t.Audience) > 1 {
		var azp struct {
			AZP string `json:"azp"`
		}
		_ = t.Claims(&azp)
		if azp.AZP != s.sso.cfg.ClientID {
			return id, refuse("wrong_audience", http.StatusUnauthorized, "The ID token from %s was issued to another client (azp): check oidc.client_id.", s.sso.name)
		}
	}
	if !sameToken(t.Nonce, flow.Nonce) {
		return id, refuse("nonce_mismatch", http.StatusUnauthorized, "The ID token from %s was not issued for this sign-in (nonce mismatch): start again from the pool's page.", s.sso.name)
	}
	if err := t.Claims(&id.claims); err != nil {
		e := refuse("bad_claims", http.StatusBadGateway, "The ID token from %s could not be read.", s.sso.name)
		e.err = err
		return id, e
	}
	id.subject, id.next = t.Subject, flow.Next
	id.email, _ = id.claims["email"].(string)
	switch v := id.claims["email_verified"].(type) {
	case bool:
		id.emailVerified = v
	case string: // some providers send "true"
		id.emailVerified = v == "true"
	}
	return id, nil
}

// whyInvalid says which check an ID token that go-oidc refused failed.
func (s *Server) whyInvalid(ctx context.Context, sigOnly *oidc.IDTokenVerifier, raw string, err error) *ssoRefusal {
	name := s.sso.name
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return refuse("expired", http.StatusUnauthorized, "The ID token from %s has expired: check that this machine's clock is right, and start again.", name)
	}
	t, serr := sigOnly.Verify(ctx, raw)
	switch {
	case serr != nil:
		return refuse("bad_signature", http.StatusUnauthorized, "The ID token from %s is not signed by its keys: the sign-in is refused.", name)
	case t.Issuer != s.sso.cfg.Issuer:
		return refuse("wrong_issuer", http.StatusUnauthorized, "The ID token was issued by %q, not by %s (%s): the sign-in is refused.", t.Issuer, name, s.sso.cfg.Issuer)
	case !slices.Contains(t.Audience, s.sso.cfg.ClientID):
		return refuse("wrong_audience", http.StatusUnauthorized, "The ID token from %s was issued to another client, not %q: the sign-in is refused.", name, s.sso.cfg.ClientID)
	}
	return refuse("invalid_token", http.StatusUnauthorized, "The ID token from %s is not valid yet or not valid here: the sign-in is refused.", name)
}

// exchangeError keeps what the provider said about a refused code, without
// the body of its answer.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("token endpoint answered %d: %s %s", re.Response.StatusCode, re.ErrorCode, re.ErrorDescription)
	}
	return err
}

// recordSSO keeps a sign-in's outcome in the audit log: the user, or why it
// was refused.
func (s *Server) recordSSO(r *http.Request, u *dspool.User, id ssoIdentity, reason string) {
	detail := "provider " + s.sso.cfg.Issuer
	if id.subject != "" {
		detail += ", subject " + id.subject
	}
	if id.email != "" {
		detail += ", email " + id.email
	}
	if u == nil {
		s.audit(r, dspool.AuditAnonymous, dspool.AuditLoginOIDC, "", dspool.AuditFailure, "refused ("+reason+"): "+detail)
		return
	}
	s.audit(r, u.Name, dspool.AuditLoginOIDC, "user "+u.Name, dspool.AuditSuccess, detail)
}
