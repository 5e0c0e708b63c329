// Package sshgw is dspool's SSH front door: `ssh USER@pool` (or
// USER+POOL@pool) authenticates by public key, lands on a node of an
// interactive pool, and every channel of the connection (shells, commands,
// sftp, port forwards) is carried to that node over its agent's
// connection. The gateway terminates SSH; nodes never see the client's
// keys and accept session streams only from the control plane.
package sshgw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/gateway/internal/ssh"
	"github.com/dspool/dspool/internal/frontdoor"
)

// Session is a connection's hold on an interactive session (server.Lease).
type Session interface {
	ID() string
	NodeName() string
	// Landed says where the login landed: node, pool, what the session
	// holds, how long it may last and idle. A shell shows it first.
	Landed() string
	// Channel starts a process; it returns the stream of its frames and,
	// when the node opened one, the connection of its stdin and stdout.
	Channel(ctx context.Context, req api.ChannelRequest) (net.Conn, net.Conn, error)
	Forward(ctx context.Context, host string, port int) (net.Conn, error)
	In(n int)
	Out(n int)
	// Done is closed when the connection must end from outside; Reason
	// says why. CredentialGone reports that only this connection ended,
	// the credential it used removed; UserDisabled that the user was
	// disabled and may not log in again.
	Done() <-chan struct{}
	Reason() string
	CredentialGone() bool
	UserDisabled() bool
	Close()
}

// Backend is what the gateway needs of the control plane.
type Backend interface {
	// Authenticate returns the user a login may act as with the key of
	// this fingerprint, or an error. For a disabled user's own key it
	// returns the user (Disabled set) with the error.
	Authenticate(ctx context.Context, login dspool.Login, fingerprint string) (*dspool.User, error)
	// AuthenticatePassword returns the user a login names when password
	// is theirs; for a disabled user, the user (Disabled set) with the
	// error.
	AuthenticatePassword(ctx context.Context, login dspool.Login, password, remote string) (*dspool.User, error)
	// OpenSession routes a connection of user to a session in pool
	// (empty: the default interactive pool). How is how the connection
	// authenticated: a key's fingerprint, or "password"; the session ends
	// the connection when that is removed. While it waits for a node it
	// calls progress with how the wait goes.
	OpenSession(ctx context.Context, user *dspool.User, pool, remote, how string, progress func(string)) (Session, error)
	// Audit appends an entry to the audit log (logins and their refusals).
	Audit(ctx context.Context, e dspool.AuditEntry)
}

// Config configures a Gateway. Zero values mean the defaults.
type Config struct {
	// HostKey is the gateway's host key (LoadOrCreateHostKey, NewHostKey).
	HostKey *HostKey
	Backend Backend
	Logger  *slog.Logger
	// HandshakeTimeout bounds the time from connect to authenticated
	// (default 30s).
	HandshakeTimeout time.Duration
	// MaxUnauthenticated bounds connections not yet authenticated, in
	// total (default 256) and per source (default 16; an IPv4 address or
	// an IPv6 /64). When all are taken, a source holding fewer takes the
	// oldest slot of the source holding the most (preauth).
	MaxUnauthenticated int
	MaxPerSource       int
	// KeepAlive is how often an idle client is probed (default 30s); a
	// client that misses three probes is dropped.
	KeepAlive time.Duration
	// Ciphers are the ciphers offered (default DefaultCiphers).
	Ciphers []string
	// PasswordAuth allows password logins (for users who set one with
	// `dspool user passwd`); keys only when false.
	PasswordAuth bool
}

// DefaultCiphers are AES-GCM only. SSH clients pick the first cipher of
// their own list that the server offers, and OpenSSH lists
// chacha20-poly1305 first; Go's chacha20 has no assembly on amd64 and
// moves half the bytes per cpu-second that AES-GCM (AES-NI) does, so it is
// offered only when configured. Every OpenSSH since 6.2 speaks AES-GCM.
var DefaultCiphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}

// CheckCiphers returns an error naming field when a cipher is not one the
// gateway supports.
func CheckCiphers(field string, ciphers []string) error {
	supported := ssh.SupportedAlgorithms().Ciphers
	for i, c := range ciphers {
		if !slices.Contains(supported, c) {
			return dspool.Invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not a cipher the gateway supports: use some of %s", c, strings.Join(supported, ", "))
		}
	}
	return nil
}

// Gateway is a running SSH front door.
type Gateway struct {
	cfg Config
	log *slog.Logger
	ssh *ssh.ServerConfig

	// refused and acceptFailed write their warnings at most every 10 s
	// and 1 s, saying how many they silenced.
	refused, acceptFailed *frontdoor.Warner

	mu      sync.Mutex
	preauth preauth
	conns   map[*ssh.ServerConn]struct{}
	closed  bool
	done    chan struct{} // closed by Close
}

// New returns a gateway; call Serve with a listener.
func New(cfg Config) *Gateway {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.MaxUnauthenticated == 0 {
		cfg.MaxUnauthenticated = 256
	}
	if cfg.MaxPerSource == 0 {
		cfg.MaxPerSource = 16
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, conns: map[*ssh.ServerConn]struct{}{}, done: make(chan struct{}),
		preauth:      preauth{max: cfg.MaxUnauthenticated, perSource: cfg.MaxPerSource, bySource: map[string][]*slot{}},
		refused:      &frontdoor.Warner{Log: cfg.Logger, Msg: "ssh connection refused: too many unauthenticated connections"},
		acceptFailed: &frontdoor.Warner{Log: cfg.Logger, Msg: "ssh accept failed; retrying", Every: time.Second}}
	if len(cfg.Ciphers) == 0 {
		cfg.Ciphers = DefaultCiphers
	}
	g.ssh = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: cfg.Ciphers},
		MaxAuthTries:      6,
		ServerVersion:     "SSH-2.0-dspool",
		PublicKeyCallback: g.publicKey,
	}
	if cfg.PasswordAuth {
		g.ssh.PasswordCallback = g.password
	}
	g.ssh.AddHostKey(cfg.HostKey.signer)
	return g
}

// Permission extensions that carry the authenticated user from the key
// callback to the connection. x/crypto/ssh hands the connection the
// Permissions returned for the key that was actually verified, not the last
// key offered (CVE-2024-45337), so nothing else is trusted.
const (
	extUser = "dspool-user"
	extUID  = "dspool-uid"
	extGID  = "dspool-gid"
	extPool = "dspool-pool"
	extKey  = "dspool-key"
	// extDisabled marks a disabled user's own credential: it authenticates
	// so that its holder, and no one else, is told why they cannot log in;
	// the connection opens no session. Its value is the refusal.
	extDisabled = "dspool-disabled"
)

func (g *Gateway) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	login, err := dspool.ParseLogin(meta.User())
	if err != nil {
		g.log.Info("ssh login refused", "remote", meta.RemoteAddr().String(), "err", err)
		return nil, &refusal{login: meta.User(), reason: "invalid login: " + dspool.Message(err)}
	}
	fp := ssh.FingerprintSHA256(key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := g.cfg.Backend.Authenticate(ctx, login, fp)
	if err != nil && u != nil && u.Disabled {
		return barred(u, login, fp, "key "+fp+" refused: "+dspool.Message(err)), nil
	}
	if err != nil {
		g.log.Info("ssh key refused", "login", login.User, "remote", meta.RemoteAddr().String(), "key", fp)
		return nil, &refusal{login: login.User, reason: "key " + fp + " refused: " + dspool.Message(err)}
	}
	return permissions(u, login, fp), nil
}

func (g *Gateway) password(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
	login, err := dspool.ParseLogin(meta.User())
	if err != nil {
		return nil, &refusal{login: meta.User(), reason: "invalid login: " + dspool.Message(err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	remote := meta.RemoteAddr().String()
	u, err := g.cfg.Backend.AuthenticatePassword(ctx, login, string(pw), remote)
	if err != nil && u != nil && u.Disabled {
		return barred(u, login, "password", "password refused: "+dspool.Message(err)), nil
	}
	if err != nil {
		g.log.Info("ssh password refused", "login", login.User, "remote", remote)
		r := &refusal{login: login.User, reason: "password refused: " + dspool.Message(err)}
		var throttled interface{ RetryAfter() time.Duration }
		if errors.As(err, &throttled) {
			// The client is told why, and when to try again.
			wait := max(time.Second, throttled.RetryAfter().Round(time.Second))
			return nil, &ssh.BannerError{Err: r, Message: fmt.Sprintf("%s: try again in %s\n", dspool.Message(err), wait)}
		}
		return nil, r
	}
	return permissions(u, login, "password"), nil
}

func permissions(u *dspool.User, login dspool.Login, how string) *ssh.Permissions {
	return &ssh.Permissions{Extensions: map[string]string{
		extUser: u.Name, extUID: strconv.Itoa(u.UID), extGID: strconv.Itoa(u.GID), extPool: login.Where(), extKey: how,
	}}
}

// barred lets a disabled user's credential authenticate, marked, so that
// the connection tells its holder why it opens nothing. x/crypto/ssh keeps
// these permissions only once the key's signature (or the password) has
// been checked: a stranger who offers the public key learns nothing more
// than for any user's key.
func barred(u *dspool.User, login dspool.Login, how, reason string) *ssh.Permissions {
	p := permissions(u, login, how)
	p.Extensions[extDisabled] = reason
	return p
}

// Serve accepts connections on ln until it is closed (nil once the
// gateway is closed, else net.ErrClosed's error). Any other error of
// Accept (out of file descriptors: EMFILE, ENFILE; a connection aborted
// before it was accepted) is waited out, as net/http does: 5 ms, doubling
// up to 1 s, logged at most once a second.
func (g *Gateway) Serve(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-g.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.acceptFailed.Warn("err", err, "retry_in", delay.String())
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-g.done:
				t.Stop()
				return nil
			}
			continue
		}
		delay = 0
		s := g.admit(c)
		if s == nil {
			g.refused.Warn("remote", frontdoor.Source(c.RemoteAddr()), "limit_total", g.cfg.MaxUnauthenticated, "limit_per_source", g.cfg.MaxPerSource)
			c.Close()
			continue
		}
		go g.serveConn(c, s)
	}
}

// Close closes every connection; Serve returns once its listener is closed.
func (g *Gateway) Close() {
	g.mu.Lock()
	if !g.closed {
		close(g.done)
	}
	g.closed = true
	conns := make([]*ssh.ServerConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// admit gives c a slot among the unauthenticated connections, or nil; a
// connection whose slot c took is closed.
func (g *Gateway) admit(c net.Conn) *slot {
	g.mu.Lock()
	s, victim := g.preauth.admit(c, frontdoor.Source(c.RemoteAddr()))
	g.mu.Unlock()
	if victim != nil {
		victim.Close()
	}
	return s
}

// authenticated frees s: its connection authenticated, or ended.
func (g *Gateway) authenticated(s *slot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.preauth.release(s)
}

func (g *Gateway) serveConn(c net.Conn, s *slot) {
	_ = c.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	// The gateway's x/crypto/ssh (gateway/internal/ssh) reads through a
	// 256 KiB buffer and decrypts AES-GCM packets where they lie in it.
	c = newQuickAckConn(c)
	sc, chans, reqs, err := ssh.NewServerConn(c, g.ssh)
	handshakeDone(c)
	g.authenticated(s)
	if err != nil {
		c.Close()
		g.auditRefusal(c.RemoteAddr().String(), err)
		return
	}
	ext := sc.Permissions.Extensions
	if ext[extDisabled] != "" {
		g.auditBarred(sc)
	} else {
		g.auditLogin(sc)
	}
	_ = c.SetDeadline(time.Time{})
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		sc.Close()
		return
	}
	g.conns[sc] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.conns, sc)
		g.mu.Unlock()
	}()
	uid, _ := strconv.Atoi(ext[extUID])
	gid, _ := strconv.Atoi(ext[extGID])
	u := &dspool.User{Name: ext[extUser], UID: uid, GID: gid}
	cc := &clientConn{g: g, sc: sc, user: u, channels: map[*channel]struct{}{}, closed: make(chan struct{}), ready: make(chan struct{})}
	defer close(cc.closed)
	cc.serve(chans, reqs, ext[extPool])
}
