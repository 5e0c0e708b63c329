package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dspool/dspool/tlsca"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/backoff"
)

// Client calls the dspool API. The zero value is not usable: set Server.
type Client struct {
	// Server is the base URL, e.g. http://127.0.0.1:8080.
	Server string
	// Token authenticates the caller (an API token, or a node credential
	// for agent calls).
	Token string
	// HTTP is the client to use; nil means a client with sensible timeouts.
	HTTP *http.Client
	// Retrying, when set, is told the first time SubmitJob retries because
	// the server cannot be reached.
	Retrying func(error)
	// Busy, when set, is told each time the server answers that it is too
	// busy to take a request now (503 with Retry-After, such as a
	// connection past its address's limit) and the request will be sent
	// again after wait.
	Busy func(wait time.Duration)
	// BusyFor bounds how long a request is sent again while the server
	// says it is busy (default 1 minute; negative: never).
	BusyFor time.Duration
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	MaxIdleConnsPerHost:   64,
	IdleConnTimeout:       90 * time.Second,
	ResponseHeaderTimeout: 0, // long polls (wait, logs -f) answer late by design
	TLSHandshakeTimeout:   10 * time.Second,
}}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// UnavailableError wraps a failure to reach the server at all, so callers
// can retry with the same idempotency key.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	switch {
	case errors.As(e.Err, &unknown):
		return "the dspool server's certificate is not signed by an authority this machine trusts: " + e.Err.Error() +
			" (give the CA's or the server's certificate in DSPOOL_CA=FILE)"
	case errors.Is(e.Err, tlsca.ErrName), errors.Is(e.Err, tlsca.ErrPin):
		return "the dspool server answered, but " + e.Err.Error()
	case errors.As(e.Err, &name):
		return "the dspool server's certificate does not name this address: " + e.Err.Error() +
			" (use --server with a name the certificate holds)"
	}
	return "cannot reach the dspool server: " + e.Err.Error() + " (is `dspool up` or `dspool server` running? check --server / DSPOOL_SERVER)"
}
func (e *UnavailableError) Unwrap() error { return e.Err }

func (c *Client) request(ctx context.Context, method, path string, body any, hdr http.Header) (*http.Response, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	// A server too busy to take the request says so with 503 and
	// Retry-After, having done nothing with it: it is sent again after
	// that, plus a random share of a growing window, so that the clients
	// it turned away together do not come back together.
	retry := backoff.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	busyFor := c.BusyFor
	if busyFor == 0 {
		busyFor = time.Minute
	}
	until := time.Now().Add(busyFor)
	for {
		resp, err := c.send(ctx, method, path, b, hdr)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 400 {
			return resp, nil
		}
		after, busy := busyAnswer(resp)
		if !busy || busyFor < 0 || time.Now().Add(after).After(until) {
			defer resp.Body.Close()
			return nil, decodeError(resp)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		wait := after + retry.Next()
		if c.Busy != nil {
			c.Busy(wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// busyAnswer reports whether resp says the server was too busy to take the
// request (503 with Retry-After in seconds), and how long it asks to wait.
func busyAnswer(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 || secs > 60 {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

func (c *Client) send(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Server, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnavailableError{Err: err}
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var eb ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
		return eb.Error
	}
	code := dspool.EInternal
	switch resp.StatusCode {
	case 400:
		code = dspool.EInvalid
	case 401:
		code = dspool.EUnauthorized
	case 403:
		code = dspool.EForbidden
	case 404:
		code = dspool.ENotFound
	case 409:
		code = dspool.EConflict
	case 413:
		code = dspool.ETooLarge
	case 429, 502, 503, 504:
		code = dspool.EUnavailable
	}
	return &dspool.Error{Code: code, Message: fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))}
}

// Do sends a JSON request and decodes a JSON answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// WhoAmI returns the caller.
func (c *Client) WhoAmI(ctx context.Context) (*dspool.User, error) {
	var u dspool.User
	return &u, c.Do(ctx, "GET", "/api/v1/whoami", nil, &u)
}

// Stream sends a JSON request and returns the body of its answer, for
// answers that come as a stream (lines of JSON, logs).
func (c *Client) Stream(ctx context.Context, method, path string, body any) (io.ReadCloser, error) {
	resp, err := c.request(ctx, method, path, body, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ApplyPools creates or updates pools, all or none.
func (c *Client) ApplyPools(ctx context.Context, pools []*dspool.Pool) ([]*dspool.Pool, error) {
	var out PoolApply
	return out.Pools, c.Do(ctx, "POST", "/api/v1/pools", &PoolApply{Pools: pools}, &out)
}

// Pools lists pools.
func (c *Client) Pools(ctx context.Context) ([]*PoolDetail, error) {
	var out []*PoolDetail
	return out, c.Do(ctx, "GET", "/api/v1/pools", nil, &out)
}

// Pool returns a pool with its nodes.
func (c *Client) Pool(ctx context.Context, name string) (*PoolDetail, error) {
	var out PoolDetail
	return &out, c.Do(ctx, "GET", "/api/v1/pools/"+url.PathEscape(name), nil, &out)
}

// JoinToken creates a join token for a pool.
func (c *Client) JoinToken(ctx context.Context, pool string) (*JoinToken, error) {
	var out JoinToken
	return &out, c.Do(ctx, "POST", "/api/v1/pools/"+url.PathEscape(pool)+"/join-tokens", nil, &out)
}

// PoolEvents returns the newest events of a pool, oldest first: those of
// the last since (all kept when 0), at most limit (0: the server's default,
// 100).
func (c *Client) PoolEvents(ctx context.Context, pool string, since time.Duration, limit int) ([]*dspool.PoolEvent, error) {
	l, err := c.PoolEventPage(ctx, pool, EventQuery{Since: since, Limit: limit})
	return l.Events, err
}

// Usage reports the use of the last since (0: the server's default, 30
// days), by pool or by user (only yours unless you are an admin).
func (c *Client) Usage(ctx context.Context, since time.Duration, by dspool.UsageBy) (*dspool.UsageReport, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", since.String())
	}
	if by != "" {
		q.Set("by", string(by))
	}
	var out dspool.UsageReport
	return &out, c.Do(ctx, "GET", "/api/v1/usage?"+q.Encode(), nil, &out)
}

// Nodes lists nodes, of one pool when pool is not empty.
func (c *Client) Nodes(ctx context.Context, pool string) ([]*dspool.Node, error) {
	var out []*dspool.Node
	return out, c.Do(ctx, "GET", "/api/v1/nodes?pool="+url.QueryEscape(pool), nil, &out)
}

// NodesWithGone lists nodes as Nodes does, and also those that are gone.
func (c *Client) NodesWithGone(ctx context.Context, pool string) ([]*dspool.Node, error) {
	var out []*dspool.Node
	return out, c.Do(ctx, "GET", "/api/v1/nodes?gone=true&pool="+url.QueryEscape(pool), nil, &out)
}

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, u UserCreate) (*dspool.User, error) {
	n, err := c.NewUser(ctx, u)
	if err != nil {
		return nil, err
	}
	return &n.User, nil
}

// NewUser creates a user, with the server's warnings about their uid.
func (c *Client) NewUser(ctx context.Context, u UserCreate) (*NewUser, error) {
	var out NewUser
	return &out, c.Do(ctx, "POST", "/api/v1/users", &u, &out)
}

// Users lists users.
func (c *Client) Users(ctx context.Context) ([]*dspool.User, error) {
	var out []*dspool.User
	return out, c.Do(ctx, "GET", "/api/v1/users", nil, &out)
}

// CreateToken creates an API token for a user (the caller when empty).
func (c *Client) CreateToken(ctx context.Context, user string) (*NewToken, error) {
	return c.CreateTokenWith(ctx, TokenCreate{User: user})
}

// CreateTokenWith creates an API token with a name, scopes and expiry.
func (c *Client) CreateTokenWith(ctx context.Context, req TokenCreate) (*NewToken, error) {
	var out NewToken
	return &out, c.Do(ctx, "POST", "/api/v1/tokens", &req, &out)
}

// Tokens lists a user's API tokens (the caller's when empty; every user's
// when all, for admins), without their secrets.
func (c *Client) Tokens(ctx context.Context, user string, all bool) ([]*dspool.Token, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if all {
		q.Set("all", "true")
	}
	var out TokenList
	return out.Tokens, c.Do(ctx, "GET", "/api/v1/tokens?"+q.Encode(), nil, &out)
}

// RevokeToken revokes an API token (yours, or any as an admin).
func (c *Client) RevokeToken(ctx context.Context, id int64) (*dspool.Token, error) {
	var out dspool.Token
	return &out, c.Do(ctx, "POST", "/api/v1/tokens/"+strconv.FormatInt(id, 10)+"/revoke", nil, &out)
}

// DisableUser disables a user (admin): their sessions end and none of
// their credentials works until EnableUser.
func (c *Client) DisableUser(ctx context.Context, name string) (*dspool.User, error) {
	var out dspool.User
	return &out, c.Do(ctx, "POST", "/api/v1/users/"+url.PathEscape(name)+"/disable", nil, &out)
}

// EnableUser enables a disabled user (admin).
func (c *Client) EnableUser(ctx context.Context, name string) (*dspool.User, error) {
	var out dspool.User
	return &out, c.Do(ctx, "POST", "/api/v1/users/"+url.PathEscape(name)+"/enable", nil, &out)
}

// AuditQuery selects entries of the audit log; zero values select all.
type AuditQuery struct {
	Since  time.Duration
	User   string
	Action string
	Limit  int
	Before int64 // the Next of the page before
}

// Audit reads a page of the audit log (admin), oldest first.
func (c *Client) Audit(ctx context.Context, aq AuditQuery) ([]*dspool.AuditEntry, error) {
	l, err := c.AuditPage(ctx, aq)
	return l.Entries, err
}

// Register registers a new node with a join token.
func (c *Client) Register(ctx context.Context, r RegisterRequest) (*RegisterResponse, error) {
	var out RegisterResponse
	return &out, c.Do(ctx, "POST", "/api/v1/agents/register", &r, &out)
}

// RotateCredential asks for a new credential for the node whose credential
// the client holds (as its Token).
func (c *Client) RotateCredential(ctx context.Context) (*RegisterResponse, error) {
	var out RegisterResponse
	return &out, c.Do(ctx, "POST", "/api/v1/agents/rotate", nil, &out)
}

// RevokeNode revokes a node's credential (admin): it is cut off at once.
func (c *Client) RevokeNode(ctx context.Context, name string) (*dspool.Node, error) {
	var out dspool.Node
	return &out, c.Do(ctx, "POST", "/api/v1/nodes/"+url.PathEscape(name)+"/revoke", nil, &out)
}

// AddKey registers an SSH public key (one authorized_keys line) for a user
// (the caller when empty).
func (c *Client) AddKey(ctx context.Context, user, key string) (*dspool.SSHKey, error) {
	var out dspool.SSHKey
	return &out, c.Do(ctx, "POST", "/api/v1/keys", &KeyAdd{User: user, Key: key}, &out)
}

// Keys lists a user's SSH keys (the caller's when empty; every user's when
// all, for admins).
func (c *Client) Keys(ctx context.Context, user string, all bool) ([]*dspool.SSHKey, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if all {
		q.Set("all", "true")
	}
	var out struct {
		Keys []*dspool.SSHKey `json:"keys"`
	}
	return out.Keys, c.Do(ctx, "GET", "/api/v1/keys?"+q.Encode(), nil, &out)
}

// RemoveKey removes an SSH key by id or fingerprint.
func (c *Client) RemoveKey(ctx context.Context, key string) (*dspool.SSHKey, error) {
	var out dspool.SSHKey
	return &out, c.Do(ctx, "DELETE", "/api/v1/keys/"+url.PathEscape(key), nil, &out)
}

// Sessions lists the newest page of interactive sessions (the server's
// default size): the caller's, or every user's when all (admins); ended
// ones too when ended.
func (c *Client) Sessions(ctx context.Context, all, ended bool) ([]*dspool.Session, error) {
	l, err := c.SessionPage(ctx, SessionQuery{AllUsers: all, Ended: ended})
	return l.Sessions, err
}

// Session returns one session.
func (c *Client) Session(ctx context.Context, id string) (*dspool.Session, error) {
	var out dspool.Session
	return &out, c.Do(ctx, "GET", "/api/v1/sessions/"+url.PathEscape(id), nil, &out)
}

// KillSession ends a session: its connections are closed with a message and
// its processes killed.
func (c *Client) KillSession(ctx context.Context, id string) (*dspool.Session, error) {
	var out dspool.Session
	return &out, c.Do(ctx, "POST", "/api/v1/sessions/"+url.PathEscape(id)+"/kill", nil, &out)
}

// SetPassword sets a user's password (yours, or any user's as an admin); an
// empty password removes it.
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	return c.Do(ctx, "PUT", "/api/v1/users/"+url.PathEscape(user)+"/password", &PasswordSet{Password: password}, nil)
}

// SetUserEmail records the email single sign-on maps to user ("" removes
// it; admin).
func (c *Client) SetUserEmail(ctx context.Context, user, email string) error {
	return c.Do(ctx, "PUT", "/api/v1/users/"+url.PathEscape(user)+"/email", &EmailSet{Email: email}, nil)
}

// Whoami returns the user the client's token acts as.
func (c *Client) Whoami(ctx context.Context) (*dspool.User, error) {
	var out dspool.User
	return &out, c.Do(ctx, "GET", "/api/v1/whoami", nil, &out)
}

// StartNotebook starts your Jupyter server (in pool; empty: the default
// interactive pool), or returns the one starting or running.
func (c *Client) StartNotebook(ctx context.Context, pool string) (*dspool.Notebook, error) {
	var out dspool.Notebook
	return &out, c.Do(ctx, "POST", "/api/v1/notebook", &NotebookStart{Pool: pool}, &out)
}

// StartNotebookProfile starts your Jupyter server in pool with a session
// of the pool's profile (or a size inline, 8cpu-64gib-1gpu).
func (c *Client) StartNotebookProfile(ctx context.Context, pool, profile string) (*dspool.Notebook, error) {
	var out dspool.Notebook
	return &out, c.Do(ctx, "POST", "/api/v1/notebook", &NotebookStart{Pool: pool, Profile: profile}, &out)
}

// Notebook returns your Jupyter server's state.
func (c *Client) Notebook(ctx context.Context) (*dspool.Notebook, error) {
	var out dspool.Notebook
	return &out, c.Do(ctx, "GET", "/api/v1/notebook", nil, &out)
}

// StopNotebook stops your Jupyter server.
func (c *Client) StopNotebook(ctx context.Context) (*dspool.Notebook, error) {
	var out dspool.Notebook
	return &out, c.Do(ctx, "DELETE", "/api/v1/notebook", nil, &out)
}
