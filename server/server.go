// Package server is dspool's control plane: the REST API under /api/v1, the
// agent hub that holds each node's connection, the scheduling loop around
// scheduler.Plan and the node monitor.
//
// The store is the truth; what server keeps in memory (connections, last
// contact, waiters) is a cache it can rebuild after a restart. It never runs
// user commands itself.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/fairshare"
	"github.com/dspool/dspool/internal/forwarded"
	"github.com/dspool/dspool/internal/metrics"
	"github.com/dspool/dspool/secrets"
	"github.com/dspool/dspool/store"
	"github.com/dspool/dspool/web"
)

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	Store *store.DB
	// Share is the path where this machine mounts the share; the server
	// reads job logs from it.
	Share string
	// ShareID is the id in the share's marker (share.IDFile): an agent
	// whose share holds another, or none, is refused ("": not checked).
	ShareID string
	// CAPin is the pin of the CA of the control plane's certificate
	// ("sha256:HEX"), which join tokens carry ("": none).
	CAPin  string
	Logger *slog.Logger
	// SSHHostKey is the pool's SSH host key (an OpenSSH private key in
	// PEM), SSHCiphers the ciphers offered and SSHPasswordAuth whether
	// password logins are allowed: what SSH gateways in processes of their
	// own serve (gateways.go).
	SSHHostKey      []byte
	SSHCiphers      []string
	SSHPasswordAuth bool
	// NodeGrace is how long a node may be silent before its attempts are
	// marked node_lost (default 30s).
	NodeGrace time.Duration
	// LeaderTerm is the term of the store's lease this control plane leads
	// under, which agents are told; 0 where it is the only one.
	LeaderTerm int64
	// NodeGoneAfter is how long a node stays lost before it is gone
	// (default 10m); it comes back if its agent connects again.
	NodeGoneAfter time.Duration
	// Heartbeat is the interval agents heartbeat at when nothing changes
	// (default 2s).
	Heartbeat time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL (default 10s).
	KillGrace time.Duration
	// MaxBody bounds request bodies (default 1 MiB).
	MaxBody int64
	// Providers create and remove the nodes of pools, by provider name
	// (dspool.ProviderLocal...). A pool whose provider is missing keeps
	// the nodes that join it.
	Providers map[string]autoscale.Provider
	// Kinds are the provider kinds pools may name, with their settings
	// (nil: autoscale.Builtin, local and static).
	Kinds *autoscale.Registry
	// JoinURL is the address new machines dial to join (what Grow hands
	// providers with each join token); JoinTTL how long such a token joins
	// (default DefaultJoinTTL).
	JoinURL string
	JoinTTL time.Duration
	// OIDC turns on single sign-on for the web front end (nil: off).
	OIDC *OIDCConfig
	// Secrets holds the key that seals users' secrets in the store (nil:
	// the control plane keeps no secrets).
	Secrets *secrets.Keyring
	// Retention is how long the store keeps what has ended (zero ages:
	// the defaults); see retention.go.
	Retention dspool.Retention
	// FairShare orders the queue and says when a job reserves a node
	// (zero fields: the defaults); see fair.go.
	FairShare fairshare.Config
	// TrustedProxies are the load balancers and reverse proxies whose
	// X-Forwarded-For, -Proto and -Host headers are believed (none by
	// default): see client.
	TrustedProxies []netip.Prefix
	// SSHAddress is where the pool's SSH gateway listens ("host:port"; ""
	// when there is none): the dashboard shows users their SSH command.
	SSHAddress string
	Now        func() time.Time
	Version    string

	// WorkTokenKey signs the API tokens that jobs and sessions get
	// (worktokens.go); keep it across restarts, or running work loses its
	// token. Nil means a random key for this process.
	WorkTokenKey []byte
}

// DefaultJoinTTL is how long the join token of a machine the autoscaler
// asked for joins: long enough for a queue (Slurm) to start it, short
// enough that one that leaks is soon worthless.
const DefaultJoinTTL = time.Hour

// DefaultNodeGoneAfter is how long a node stays lost before it is gone.
const DefaultNodeGoneAfter = 10 * time.Minute

// Server is the control plane.
type Server struct {
	cfg Config
	db  *store.DB
	log *slog.Logger
	hub *hub
	// sessions are the live interactive sessions; placeMu serializes
	// placing sessions with scheduling passes.
	sessions  *sessions
	gateways  *gateways
	notebooks *notebooks
	scaler    *scaler
	teams     teamState
	closed    closedWaits
	fair      fairState
	preempts  preempting
	sso       *sso // nil without single sign-on
	dash      *web.Dashboard
	proxies   forwarded.Proxies
	auth      authCache
	tokenUse  tokenUse
	backups   backups
	guesses   guesses
	failures  loginFailures
	placeMu   sync.Mutex
	kick      chan struct{}
	depsKick  chan struct{} // dependencies and parked tasks to look at (depsLoop)
	// depsGen counts submissions that may wait or park; depsIdle is the
	// count when the dependencies' loop last found nothing waiting.
	depsGen, depsIdle atomic.Uint64

	recurWake chan struct{} // wakes the loop that fires schedules
	metrics   *serverMetrics
	reg       *metrics.Registry
	started   time.Time

	workTokens workTokens // the tokens of jobs and sessions

	mu      sync.Mutex
	waiters map[int64][]chan struct{}

	hmu      sync.Mutex
	headroom map[string]headroom // nil: unknown
	skipped  bool                // a submission was not kicked since the last headroom with room
}

// New returns a server; call Run to start its loops and Handler to serve.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.NodeGrace == 0 {
		cfg.NodeGrace = 30 * time.Second
	}
	if cfg.NodeGoneAfter == 0 {
		cfg.NodeGoneAfter = DefaultNodeGoneAfter
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 10 * time.Second
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Retention = cfg.Retention.WithDefaults()
	cfg.FairShare = cfg.FairShare.WithDefaults()
	s := &Server{
		cfg: cfg, db: cfg.Store, log: cfg.Logger,
		kick: make(chan struct{}, 1), depsKick: make(chan struct{}, 1), recurWake: make(chan struct{}, 1), waiters: map[int64][]chan struct{}{},
		reg: &metrics.Registry{}, started: cfg.Now(),
	}
	s.guesses = newGuesses(cfg.Now)
	s.proxies = forwarded.New(cfg.TrustedProxies)
	s.workTokens = newWorkTokens(cfg.WorkTokenKey)
	s.hub = newHub(s)
	s.sessions = newSessions(s)
	s.gateways = newGateways(s)
	s.notebooks = newNotebooks(s)
	if s.cfg.Kinds == nil {
		s.cfg.Kinds = autoscale.Builtin()
	}
	if s.cfg.JoinTTL == 0 {
		s.cfg.JoinTTL = DefaultJoinTTL
	}
	s.scaler = newScaler(s, cfg.Providers)
	s.metrics = newMetrics(s)
	s.sso = newSSO(cfg.OIDC)
	s.depsGen.Store(1) // what the store holds is not known to wait for nothing
	apiMux := http.NewServeMux()
	s.mountAPI(apiMux)
	s.dash = web.New(web.Options{API: apiMux, Logins: webLogins{s}, SSH: cfg.SSHAddress, Logger: cfg.Logger, Now: cfg.Now})
	return s
}

// Run runs the scheduling loop, the loop that fires schedules and the node
// monitor until ctx ends.
func (s *Server) Run(ctx context.Context) {
	// Sessions outlive the control plane: take up the previous run's.
	s.recoverSessions(ctx)
	var wg sync.WaitGroup
	wg.Add(11)
	go func() { defer wg.Done(); s.gateways.sweepLoop(ctx) }()
	go func() { defer wg.Done(); s.retentionLoop(ctx) }()
	go func() { defer wg.Done(); s.failureLoop(ctx) }()
	go func() { defer wg.Done(); s.roomLoop(ctx) }()
	go func() { defer wg.Done(); s.scaler.run(ctx) }()
	go func() { defer wg.Done(); s.notebooks.cullLoop(ctx) }()
	go func() { defer wg.Done(); s.scheduleLoop(ctx) }()
	go func() { defer wg.Done(); s.depsLoop(ctx) }()
	go func() { defer wg.Done(); s.recurringLoop(ctx) }()
	go func() { defer wg.Done(); s.monitorLoop(ctx) }()
	go func() { defer wg.Done(); s.sessions.recordLoop(ctx) }()
	if s.sso != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.sso.run(ctx, s) }()
	}
	<-ctx.Done()
	s.hub.closeAll()
	wg.Wait()
}

// Handler returns the HTTP handler for the API, the agent endpoints and
// /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.mountAPI(mux)
	// Users' Jupyter servers. Bodies are theirs to bound (uploads of large
	// files go through here), so no body limit.
	mux.Handle("/user/{name}/", s.toLoginPage(s.authenticateWith(authUser, dspool.ScopeSessions, checkJupyterXSRF, s.serveUser)))
	s.dash.Register(mux)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /login/oidc", s.ssoStart)
	mux.HandleFunc("GET "+ssoCallback, s.ssoFinish)
	mux.HandleFunc("GET /sdk/{$}", s.serveSDKIndex)
	mux.HandleFunc("GET /sdk/{file}", s.serveSDK)
	mux.Handle("GET /metrics", s.reg)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, dspool.Errorf(dspool.ENotFound, "no route %s %s: see /api/v1/openapi.json", r.Method, r.URL.Path))
	})
	return mux
}

// mountAPI mounts the API's routes (and the agents' and health checks') on
// mux, each behind its authentication and body limit.
func (s *Server) mountAPI(mux *http.ServeMux) {
	for _, r := range s.routes() {
		h := r.handler
		if r.auth != authNone {
			h = s.authenticate(r.auth, r.scope, h)
		}
		mux.Handle(r.method+" "+r.path, s.limitBody(h))
	}
}

// NewHTTPServer wraps h with the timeouts and limits every listener of
// dspool uses.
// Its own errors (a TLS handshake a client broke off) go to log, as
// warnings.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

type authLevel int

const (
	authNone authLevel = iota
	authUser
	authAdmin
)

type route struct {
	method, path string
	auth         authLevel
	// scope is what a token must be allowed to do to call the route (see
	// dspool.Scope*); "" for routes without a user.
	scope   string
	handler http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/healthz", authNone, "", s.healthz},
		{"HEAD", "/healthz", authNone, "", s.healthz},
		{"GET", "/readyz", authNone, "", s.readyz},
		{"HEAD", "/readyz", authNone, "", s.readyz},
		{"GET", "/api/v1/openapi.json", authNone, "", s.openapi},
		{"GET", "/api/v1/whoami", authUser, "", s.whoami}, // who a token is: any token may ask
		{"GET", "/api/v1/gateway/config", authAdmin, dspool.ScopeGateway, s.gatewayConfig},
		{"POST", "/api/v1/gateway/auth", authAdmin, dspool.ScopeGateway, s.gatewayAuth},
		{"POST", "/api/v1/gateway/sessions", authAdmin, dspool.ScopeGateway, s.gatewayOpen},
		{"POST", "/api/v1/gateway/channel", authAdmin, dspool.ScopeGateway, s.gatewayChannel},
		{"POST", "/api/v1/gateway/forward", authAdmin, dspool.ScopeGateway, s.gatewayForward},
		{"POST", "/api/v1/gateway/heartbeat", authAdmin, dspool.ScopeGateway, s.gatewayHeartbeat},
		{"POST", "/api/v1/gateway/close", authAdmin, dspool.ScopeGateway, s.gatewayClose},
		{"POST", "/api/v1/gateway/audit", authAdmin, dspool.ScopeGateway, s.gatewayAudit},
		{"POST", "/api/v1/jobs", authUser, dspool.ScopeJobs, s.submitJob},
		{"GET", "/api/v1/jobs", authUser, dspool.ScopeRead, s.listJobs},
		{"GET", "/api/v1/jobs/{id}", authUser, dspool.ScopeRead, s.getJob},
		{"POST", "/api/v1/jobs/{id}/cancel", authUser, dspool.ScopeJobs, s.cancelJob},
		{"GET", "/api/v1/jobs/{id}/wait", authUser, dspool.ScopeRead, s.waitJob},
		{"GET", "/api/v1/jobs/{id}/logs", authUser, dspool.ScopeRead, s.jobLogs},
		{"POST", "/api/v1/jobs/{id}/hold", authUser, dspool.ScopeJobs, s.holdJob},
		{"POST", "/api/v1/jobs/{id}/priority", authUser, dspool.ScopeJobs, s.setJobPriority},
		{"POST", "/api/v1/jobs/{id}/release", authUser, dspool.ScopeJobs, s.releaseJob},
		{"POST", "/api/v1/schedules", authUser, dspool.ScopeJobs, s.createSchedule},
		{"GET", "/api/v1/schedules", authUser, dspool.ScopeRead, s.listSchedules},
		{"GET", "/api/v1/schedules/{ref}", authUser, dspool.ScopeRead, s.getSchedule},
		{"POST", "/api/v1/schedules/{ref}/pause", authUser, dspool.ScopeJobs, s.pauseSchedule},
		{"POST", "/api/v1/schedules/{ref}/resume", authUser, dspool.ScopeJobs, s.resumeSchedule},
		{"DELETE", "/api/v1/schedules/{ref}", authUser, dspool.ScopeJobs, s.deleteSchedule},
		{"GET", "/api/v1/pools", authUser, dspool.ScopeRead, s.listPools},
		{"POST", "/api/v1/pools", authAdmin, dspool.ScopeAdmin, s.applyPools},
		{"GET", "/api/v1/pools/{name}", authUser, dspool.ScopeRead, s.getPool},
		{"DELETE", "/api/v1/pools/{name}", authAdmin, dspool.ScopeAdmin, s.deletePool},
		{"POST", "/api/v1/pools/{name}/join-tokens", authAdmin, dspool.ScopeAdmin, s.createJoinToken},
		{"GET", "/api/v1/pools/{name}/join-tokens", authAdmin, dspool.ScopeAdmin, s.listJoinTokens},
		{"POST", "/api/v1/pools/{name}/join-tokens/revoke", authAdmin, dspool.ScopeAdmin, s.revokeJoinTokens},
		{"POST", "/api/v1/pools/{name}/join-tokens/{id}/revoke", authAdmin, dspool.ScopeAdmin, s.revokeJoinTokens},
		{"GET", "/api/v1/pools/{name}/events", authUser, dspool.ScopeRead, s.poolEvents},
		{"GET", "/api/v1/usage", authUser, dspool.ScopeRead, s.usage},
		{"GET", "/api/v1/queue", authUser, dspool.ScopeRead, s.queue},
		{"GET", "/api/v1/share", authUser, dspool.ScopeRead, s.share},
		{"GET", "/api/v1/nodes", authUser, dspool.ScopeRead, s.listNodes},
		{"POST", "/api/v1/nodes/{name}/revoke", authAdmin, dspool.ScopeAdmin, s.revokeNode},
		{"POST", "/api/v1/nodes/{name}/drain", authAdmin, dspool.ScopeAdmin, s.drainNodeAPI},
		{"POST", "/api/v1/nodes/{name}/undrain", authAdmin, dspool.ScopeAdmin, s.undrainNodeAPI},
		{"DELETE", "/api/v1/nodes/{name}", authAdmin, dspool.ScopeAdmin, s.removeNodeAPI},
		{"GET", "/api/v1/users", authAdmin, dspool.ScopeAdmin, s.listUsers},
		{"POST", "/api/v1/users", authAdmin, dspool.ScopeAdmin, s.createUser},
		{"POST", "/api/v1/users/{name}/disable", authAdmin, dspool.ScopeAdmin, s.disableUser},
		{"POST", "/api/v1/users/{name}/enable", authAdmin, dspool.ScopeAdmin, s.enableUser},
		{"PUT", "/api/v1/users/{name}/password", authUser, dspool.ScopeAccount, s.setPassword},
		{"PUT", "/api/v1/users/{name}/email", authAdmin, dspool.ScopeAdmin, s.setUserEmail},
		{"POST", "/api/v1/tokens", authUser, dspool.ScopeAccount, s.createToken},
		{"GET", "/api/v1/tokens", authUser, dspool.ScopeRead, s.listTokens},
		{"POST", "/api/v1/tokens/{id}/revoke", authUser, dspool.ScopeAccount, s.revokeToken},
		{"GET", "/api/v1/audit", authAdmin, dspool.ScopeAdmin, s.auditLog},
		{"GET", "/api/v1/backup", authAdmin, dspool.ScopeAdmin, s.backup},
		{"GET", "/api/v1/keys", authUser, dspool.ScopeRead, s.listKeys},
		{"POST", "/api/v1/keys", authUser, dspool.ScopeAccount, s.addKey},
		{"DELETE", "/api/v1/keys/{key}", authUser, dspool.ScopeAccount, s.removeKey},
		{"GET", "/api/v1/notebook", authUser, dspool.ScopeRead, s.notebookStatus},
		{"POST", "/api/v1/notebook", authUser, dspool.ScopeSessions, s.startNotebook},
		{"DELETE", "/api/v1/notebook", authUser, dspool.ScopeSessions, s.stopNotebook},
		{"GET", "/api/v1/secrets", authUser, dspool.ScopeRead, s.listSecrets},
		{"PUT", "/api/v1/secrets/{name}", authUser, dspool.ScopeAccount, s.setSecret},
		{"DELETE", "/api/v1/secrets/{name}", authUser, dspool.ScopeAccount, s.deleteSecret},
		{"POST", "/api/v1/secrets/rotate-key", authAdmin, dspool.ScopeAdmin, s.rotateSecretsKey},
		{"GET", "/api/v1/sessions", authUser, dspool.ScopeRead, s.listSessions},
		{"GET", "/api/v1/sessions/{id}", authUser, dspool.ScopeRead, s.getSession},
		{"POST", "/api/v1/sessions/{id}/kill", authUser, dspool.ScopeSessions, s.killSession},
		{"GET", "/api/v1/teams", authUser, dspool.ScopeRead, s.listTeams},
		{"POST", "/api/v1/teams", authAdmin, dspool.ScopeAdmin, s.createTeam},
		{"GET", "/api/v1/teams/{name}", authUser, dspool.ScopeRead, s.getTeam},
		{"DELETE", "/api/v1/teams/{name}", authAdmin, dspool.ScopeAdmin, s.deleteTeam},
		{"PUT", "/api/v1/teams/{name}/members/{user}", authUser, dspool.ScopeAccount, s.putTeamMember},
		{"DELETE", "/api/v1/teams/{name}/members/{user}", authUser, dspool.ScopeAccount, s.deleteTeamMember},
		{"PUT", "/api/v1/teams/{name}/limits", authAdmin, dspool.ScopeAdmin, s.setTeamLimits},
		{"GET", "/api/v1/users/{name}/limits", authUser, dspool.ScopeRead, s.getUserLimits},
		{"PUT", "/api/v1/users/{name}/limits", authAdmin, dspool.ScopeAdmin, s.setUserLimits},
		{"POST", "/api/v1/agents/register", authNone, "", s.hub.register},
		{"GET", "/api/v1/agents/connect", authNone, "", s.hub.connect},
		{"POST", "/api/v1/agents/rotate", authNone, "", s.hub.rotate},
		{"GET", "/api/v1/agents/data", authNone, "", s.hub.acceptData},
	}
}

type ctxKey int

const userKey ctxKey = 0

func userFrom(r *http.Request) *dspool.User { return r.Context().Value(userKey).(*dspool.User) }

// client is who sent r: its address, and the scheme and host it asked
// for, through the trusted proxies. Every decision and record about a
// request's origin (audit entries, password throttles, Secure cookies,
// the URLs the server builds, origin checks) takes them from here, never
// from r.RemoteAddr, r.TLS or r.Host.
func (s *Server) client(r *http.Request) forwarded.Client { return s.proxies.Client(r) }

// HashSecret is how every token, join token and node credential is stored.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// NewSecret returns a random secret with a prefix that says what it is.
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func (s *Server) authenticate(level authLevel, scope string, next http.HandlerFunc) http.HandlerFunc {
	return s.authenticateWith(level, scope, checkXSRF, next)
}

// authenticateWith resolves the caller (API token or login cookie), checks
// the level and, for a token, that it has scope; for cookie logins it
// applies xsrf to the request.
func (s *Server) authenticateWith(level authLevel, scope string, xsrf func(*http.Request, *webLogin) error, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, login, tok, err := s.identify(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if err := xsrf(r, login); err != nil {
			writeError(w, err)
			return
		}
		if level == authAdmin && !u.Admin {
			writeError(w, dspool.Errorf(dspool.EForbidden, "this needs an admin: ask an admin of this pool"))
			return
		}
		if err := checkScope(tok, scope); err != nil {
			writeError(w, err)
			return
		}
		if u.Admin && scope == dspool.ScopeAccount && tok != nil && !slices.Contains(tok.Scopes, dspool.ScopeAdmin) {
			// An admin's token without the admin scope manages the
			// account alone, as anyone else's does.
			account := *u
			account.Admin = false
			u = &account
		}
		ctx := context.WithValue(r.Context(), userKey, u)
		next(w, r.WithContext(context.WithValue(ctx, credKey, &credential{tok: tok})))
	}
}

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBody {
			writeError(w, dspool.Errorf(dspool.ETooLarge, "request body is %d bytes: at most %d", r.ContentLength, s.cfg.MaxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		next.ServeHTTP(w, r)
	})
}

// readJSON decodes the body into v, naming the offending field on error.
func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return dspool.Errorf(dspool.ETooLarge, "request body is over %d bytes", mbe.Limit)
		}
		return dspool.Errorf(dspool.EInvalid, "read body: %v", err)
	}
	if len(b) == 0 {
		return dspool.Errorf(dspool.EInvalid, "request body is empty: send a JSON object")
	}
	err = dspool.DecodeJSON(b, v)
	if e, ok := err.(*dspool.Error); ok && e.Field == "" {
		e.Field = "body"
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var e *dspool.Error
	if !errors.As(err, &e) {
		e = &dspool.Error{Code: dspool.EInternal, Message: "internal error: see the server log"}
	}
	writeJSON(w, api.HTTPStatus(e.Code), api.ErrorBody{Error: e})
}

// fail logs internal errors once, here, and answers the request.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if dspool.ErrorCode(err) == dspool.EInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, err)
}

// notify wakes everyone waiting on job id.
func (s *Server) notify(id int64) {
	s.mu.Lock()
	ws := s.waiters[id]
	delete(s.waiters, id)
	s.mu.Unlock()
	for _, c := range ws {
		close(c)
	}
}

// watch returns a channel closed at the next change of job id.
func (s *Server) watch(id int64) chan struct{} {
	c := make(chan struct{})
	s.mu.Lock()
	s.waiters[id] = append(s.waiters[id], c)
	s.mu.Unlock()
	return c
}

func (s *Server) unwatch(id int64, c chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, x := range ws {
		if x == c {
			s.waiters[id] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(s.waiters[id]) == 0 {
		delete(s.waiters, id)
	}
}

// Kick asks the scheduling loop to run soon, and the dependencies' loop:
// what changed may settle what jobs wait for.
func (s *Server) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.kickDeps()
	s.scaler.kick()
}

// kickDeps asks the dependencies' loop alone to run soon (depsLoop): a job
// ended or went, which frees no room but may settle what others wait for.
func (s *Server) kickDeps() {
	select {
	case s.depsKick <- struct{}{}:
	default:
	}
}
