package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// API tokens: each has scopes (what its routes may be, see route.scope),
// may expire, and may be revoked. A web login may do everything its user
// may; a token only what its scopes allow. Revoking a token, or disabling
// its user, drops it from the auth cache at once and ends the Jupyter
// server it started (see access.go).

// credential is how a request authenticated: by an API token (tok), or by
// a web login (tok nil).
type credential struct{ tok *dspool.Token }

const credKey ctxKey = 1

// credFrom returns how r authenticated; nil for routes without a user.
func credFrom(r *http.Request) *credential {
	c, _ := r.Context().Value(credKey).(*credential)
	return c
}

// label names the credential in records: "token 12" or "web login".
func (c *credential) label() string {
	if c == nil {
		return ""
	}
	if c.tok != nil && c.tok.ID == 0 { // a work token
		return c.tok.Name
	}
	if c.tok != nil {
		return tokenLabel(c.tok.ID)
	}
	return webLoginLabel
}

const webLoginLabel = "web login"

func tokenLabel(id int64) string { return "token " + strconv.FormatInt(id, 10) }

// identify resolves the caller of r: by API token (then with the token), or
// by login cookie (then with the login).
func (s *Server) identify(r *http.Request) (*dspool.User, *webLogin, *dspool.Token, error) {
	if secret := bearer(r); secret != "" {
		u, t, err := s.tokenCaller(r.Context(), secret)
		return u, nil, t, err
	}
	u, login, err := s.caller(r)
	return u, login, nil, err
}

// tokenCaller returns the user and token of an API token's secret. An
// expired or revoked token, or one of a disabled user, is refused with an
// EUnauthorized error that says so.
func (s *Server) tokenCaller(ctx context.Context, secret string) (*dspool.User, *dspool.Token, error) {
	if strings.HasPrefix(secret, workTokenPrefix) {
		return s.workCaller(ctx, secret)
	}
	hash := HashSecret(secret)
	u, t, cached := s.auth.getToken(hash)
	if !cached {
		var err error
		if u, t, err = s.db.TokenByHash(ctx, hash); err != nil {
			return nil, nil, err
		}
		s.auth.putToken(hash, u, t)
	}
	now := s.cfg.Now()
	const renew = "use another, or make a new one with `dspool token create` from a login or token that works (or ask an admin for one)"
	switch {
	case t.RevokedAt != nil:
		return nil, nil, dspool.Errorf(dspool.EUnauthorized, "%s was revoked on %s: %s", ownedToken(t), stamp(*t.RevokedAt), renew)
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return nil, nil, dspool.Errorf(dspool.EUnauthorized, "%s expired on %s: %s", ownedToken(t), stamp(*t.ExpiresAt), renew)
	case u.Disabled:
		return nil, nil, disabledError(u.Name)
	}
	// Only a use that is let in counts as one.
	if !cached {
		s.tokenUse.touch(s, t)
	}
	return u, t, nil
}

// ownedToken names a token and its user for messages: "token 3 (alice's)".
func ownedToken(t *dspool.Token) string {
	return fmt.Sprintf("%s (%s's)", tokenLabel(t.ID), t.User)
}

func disabledError(name string) error {
	return dspool.Errorf(dspool.EUnauthorized, "user %s is disabled: an admin enables it with `dspool user enable %s`", name, name)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// checkScope refuses a token that lacks scope.
func checkScope(t *dspool.Token, scope string) error {
	if t == nil || scope == "" || slices.Contains(t.Scopes, scope) {
		return nil
	}
	if t.ID == 0 { // a work token
		return dspool.Errorf(dspool.EForbidden, "the token of %s (%s's, in DSPOOL_TOKEN) has scopes %s and not %s: the token that running work gets does not manage the account or the pool; do this from a login, or with a token of your own made by one (`dspool token create --scope %s`): here, `unset DSPOOL_TOKEN` lets the CLI use your saved login",
			t.Name, t.User, strings.Join(t.Scopes, ","), scope, scope)
	}
	maker := "a token with the account and " + scope + " scopes"
	if scope == dspool.ScopeAccount || scope == dspool.ScopeAdmin {
		maker = "a token with the " + scope + " scope"
	}
	return dspool.Errorf(dspool.EForbidden, "%s lacks the %s scope this needs (it has %s): use a token that has it, made by a login or by %s (`dspool token create --scope %s`); a token without the account scope makes no tokens",
		ownedToken(t), scope, strings.Join(t.Scopes, ","), maker, scope)
}

// tokenUse writes when each token was last used, at most once a minute per
// token, off the request's path.
type tokenUse struct {
	mu      sync.Mutex
	written map[int64]time.Time
}

// maxTokenUse bounds the tokens tokenUse remembers.
const maxTokenUse = 100000

func (tu *tokenUse) touch(s *Server, t *dspool.Token) {
	now := s.cfg.Now()
	if t.LastUsed != nil && now.Sub(*t.LastUsed) < time.Minute {
		return
	}
	tu.mu.Lock()
	if last, ok := tu.written[t.ID]; ok && now.Sub(last) < time.Minute {
		tu.mu.Unlock()
		return
	}
	if tu.written == nil || len(tu.written) >= maxTokenUse {
		tu.written = map[int64]time.Time{}
	}
	tu.written[t.ID] = now
	tu.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.db.TouchToken(ctx, t.ID, now); err != nil {
			s.log.Debug("record a token's use", "token", t.ID, "err", err)
		}
	}()
}

// getToken returns the cached user and token of a token's hash.
func (c *authCache) getToken(hash []byte) (*dspool.User, *dspool.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[string(hash)]
	if !ok || e.tok == nil || time.Now().After(e.until) {
		return nil, nil, false
	}
	return e.user, e.tok, true
}

// putToken caches a token read from the store, unless it or its user was
// dropped while it was being read.
func (c *authCache) putToken(hash []byte, u *dspool.User, t *dspool.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.droppedLocked(u.ID, t.ID) {
		return
	}
	if c.m == nil || len(c.m) >= authCacheLimit {
		c.m = map[string]authEntry{}
	}
	c.m[string(hash)] = authEntry{user: u, tok: t, until: time.Now().Add(authTTL)}
}

// dropToken forgets token id; dropUser forgets every credential of user
// id. For authTTL after, what a request read from the store before the drop
// is not cached.
func (c *authCache) dropToken(id int64) {
	c.dropWhere(func(e authEntry) bool { return e.tok != nil && e.tok.ID == id }, func(d *droppedCreds) { d.tokens[id] = time.Now() })
}

func (c *authCache) dropUser(id int64) {
	c.dropWhere(func(e authEntry) bool { return e.user.ID == id }, func(d *droppedCreds) { d.users[id] = time.Now() })
}

func (c *authCache) dropWhere(match func(authEntry) bool, mark func(*droppedCreds)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if match(e) {
			delete(c.m, k)
		}
	}
	now := time.Now()
	if c.dropped.users == nil {
		c.dropped = droppedCreds{users: map[int64]time.Time{}, tokens: map[int64]time.Time{}}
	}
	for _, m := range []map[int64]time.Time{c.dropped.users, c.dropped.tokens} {
		for id, at := range m {
			if now.Sub(at) > authTTL {
				delete(m, id)
			}
		}
	}
	mark(&c.dropped)
}

// droppedCreds are the users and tokens dropped in the last authTTL.
type droppedCreds struct{ users, tokens map[int64]time.Time }

// droppedLocked reports whether user or token (0: none) was dropped in the
// last authTTL; c.mu is held.
func (c *authCache) droppedLocked(user, token int64) bool {
	now := time.Now()
	if at, ok := c.dropped.users[user]; ok && now.Sub(at) <= authTTL {
		return true
	}
	at, ok := c.dropped.tokens[token]
	return ok && token != 0 && now.Sub(at) <= authTTL
}

// maxTokenName bounds a token's name.
const maxTokenName = 100

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req api.TokenCreate
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	caller, by := userFrom(r), credFrom(r).tok
	target := caller
	if req.User != "" && req.User != caller.Name {
		if !caller.Admin {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin creates tokens for other users"))
			return
		}
		u, err := s.db.User(r.Context(), req.User)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		target = u
	}
	if err := dspool.ValidateText("name", req.Name, maxTokenName); err != nil {
		s.fail(w, r, err)
		return
	}
	scopes, expires, err := s.tokenLimits(req, by, target.Admin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	secret := NewSecret("dsp_")
	t, err := s.db.AddToken(r.Context(), target.ID, HashSecret(secret), req.Name, scopes, expires)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	detail := "scopes " + strings.Join(t.Scopes, ",") + ", expires never"
	if t.ExpiresAt != nil {
		detail = "scopes " + strings.Join(t.Scopes, ",") + ", expires " + stamp(*t.ExpiresAt)
	}
	if target.ID != caller.ID {
		detail = "of user " + target.Name + ", " + detail
	}
	s.audit(r, "", dspool.AuditTokenCreate, tokenLabel(t.ID), dspool.AuditSuccess, detail)
	writeJSON(w, http.StatusCreated, api.NewToken{Token: *t, Secret: secret})
}

// tokenLimits checks what a new token may do. A token cannot make a token
// that can do more than itself: its scopes are a subset of the asking
// token's (by default the same), and it expires no later. The scopes are
// those the token really has for its user (admin), as the list shows them.
func (s *Server) tokenLimits(req api.TokenCreate, by *dspool.Token, admin bool) ([]string, *time.Time, error) {
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = dspool.Scopes
		if by != nil {
			scopes = by.Scopes
		}
	}
	if err := dspool.CheckScopes("scopes", scopes); err != nil {
		return nil, nil, err
	}
	scopes = dspool.EffectiveScopes(scopes, admin)
	if by != nil {
		for _, x := range scopes {
			if !slices.Contains(by.Scopes, x) {
				return nil, nil, dspool.Errorf(dspool.EForbidden, "token %d has scopes %s and cannot make a token with the %s scope: leave --scope out, or ask with a token or login that has it",
					by.ID, strings.Join(by.Scopes, ","), x)
			}
		}
	}
	expires := req.ExpiresAt
	switch {
	case req.Never && expires != nil:
		return nil, nil, dspool.Invalid("never", "a token that never expires has no expires_at: give one or the other")
	case expires != nil && !expires.After(s.cfg.Now()):
		return nil, nil, dspool.Invalid("expires_at", "%s is not in the future: give a positive span of time, e.g. 30d", stamp(*expires))
	}
	if by == nil || by.ExpiresAt == nil {
		return scopes, expires, nil
	}
	// A token that expires makes only tokens that expire no later.
	limit := *by.ExpiresAt
	switch {
	case req.Never:
		return nil, nil, dspool.Invalid("never", "token %d that asks expires on %s, and a token cannot outlive the token that made it: give a shorter --expires, at most until %s, or ask with a login or a token that never expires",
			by.ID, stamp(limit), stamp(limit))
	case expires == nil || req.CapExpiry && expires.After(limit):
		expires = &limit
	case expires.After(limit):
		return nil, nil, dspool.Invalid("expires_at", "%s is after %s, when token %d that asks expires, and a token cannot outlive the token that made it: give a shorter --expires, at most until %s",
			stamp(*expires), stamp(limit), by.ID, stamp(limit))
	}
	return scopes, expires, nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if r.URL.Query().Get("all") == "true" {
		if !userFrom(r).Admin {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin lists every user's tokens"))
			return
		}
		user = ""
	} else {
		var err error
		if user, err = s.target(r, user, "lists tokens"); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	list, err := s.db.Tokens(r.Context(), user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.TokenList{Tokens: list})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r)
	notFound := dspool.Errorf(dspool.ENotFound, "token %s not found: list yours with `dspool token list`", r.PathValue("id"))
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r, notFound)
		return
	}
	owner := u.Name
	if u.Admin {
		owner = "" // any user's
	}
	now := s.cfg.Now()
	t, err := s.db.RevokeToken(r.Context(), id, owner, now)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.auth.dropToken(t.ID)
	if t.RevokedAt.Equal(now) { // revoked now, not before
		reason := fmt.Sprintf("%s was revoked by %s", tokenLabel(t.ID), u.Name)
		s.endCredential(t.User, tokenLabel(t.ID), reason)
		detail := "of user " + t.User
		if t.Name != "" {
			detail += ", named " + strconv.Quote(t.Name)
		}
		s.audit(r, "", dspool.AuditTokenRevoke, tokenLabel(t.ID), dspool.AuditSuccess, detail)
	}
	writeJSON(w, http.StatusOK, t)
}

// RouteInfo is what a route asks of its caller, for the tests that cover
// every route (the authorization matrix).
type RouteInfo struct {
	Route string // "METHOD /path"
	Auth  string // "none", "user" or "admin"
	Scope string // the token scope it needs; "" without a user
}

// RouteInfos lists every API route with what it asks of its caller.
func (s *Server) RouteInfos() []RouteInfo {
	var out []RouteInfo
	for _, r := range s.routes() {
		auth := map[authLevel]string{authNone: "none", authUser: "user", authAdmin: "admin"}[r.auth]
		out = append(out, RouteInfo{Route: r.method + " " + r.path, Auth: auth, Scope: r.scope})
	}
	return out
}
