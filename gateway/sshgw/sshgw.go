// Package sshgw is dspool's SSH front door: `ssh USER@pool` (or
// USER+POOL@pool) authenticates by public key, lands on a node of an
// interactive pool, and every channel of the connection (shells, commands,
// sftp, port forwards) is carried to that node over its agent's
// connection. The gateway terminates SSH; nodes never see the client's
// keys and accept session streams only from the control plane.
package sshgw

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"golang.org/x/crypto/ssh"
)

// Session is a connection's hold on an interactive session (server.Lease).
type Session interface {
	ID() string
	NodeName() string
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
	AuthenticatePassword(ctx context.Context, login dspool.Login, password string) (*dspool.User, error)
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
	HostKey ssh.Signer
	Backend Backend
	Logger  *slog.Logger
	// HandshakeTimeout bounds the time from connect to authenticated
	// (default 30s).
	HandshakeTimeout time.Duration
	// MaxUnauthenticated bounds connections not yet authenticated, in
	// total (default 256) and per source address (default 16).
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

	mu       sync.Mutex
	unauth   int
	bySource map[string]int
	conns    map[*ssh.ServerConn]struct{}
	closed   bool
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
	g := &Gateway{cfg: cfg, log: cfg.Logger, bySource: map[string]int{}, conns: map[*ssh.ServerConn]struct{}{}}
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
	g.ssh.AddHostKey(cfg.HostKey)
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
	u, err := g.cfg.Backend.AuthenticatePassword(ctx, login, string(pw))
	if err != nil && u != nil && u.Disabled {
		return barred(u, login, "password", "password refused: "+dspool.Message(err)), nil
	}
	if err != nil {
		g.log.Info("ssh password refused", "login", login.User, "remote", meta.RemoteAddr().String())
		return nil, &refusal{login: login.User, reason: "password refused: " + dspool.Message(err)}
	}
	return permissions(u, login, "password"), nil
}

func permissions(u *dspool.User, login dspool.Login, how string) *ssh.Permissions {
	return &ssh.Permissions{Extensions: map[string]string{
		extUser: u.Name, extUID: strconv.Itoa(u.UID), extGID: strconv.Itoa(u.GID), extPool: login.Pool, extKey: how,
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

// Serve accepts connections on ln until it is closed.
func (g *Gateway) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			g.mu.Lock()
			closed := g.closed
			g.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		src := sourceOf(c.RemoteAddr())
		if !g.admit(src) {
			g.log.Warn("ssh connection dropped: too many unauthenticated connections", "remote", src)
			c.Close()
			continue
		}
		go g.serveConn(c, src)
	}
}

// Close closes every connection; Serve returns once its listener is closed.
func (g *Gateway) Close() {
	g.mu.Lock()
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

func sourceOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func (g *Gateway) admit(src string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unauth >= g.cfg.MaxUnauthenticated || g.bySource[src] >= g.cfg.MaxPerSource {
		return false
	}
	g.unauth++
	g.bySource[src]++
	return true
}

func (g *Gateway) authenticated(src string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unauth--
	if g.bySource[src]--; g.bySource[src] <= 0 {
		delete(g.bySource, src)
	}
}

func (g *Gateway) serveConn(c net.Conn, src string) {
	_ = c.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	// x/crypto/ssh (third_party/golang.org/x/crypto) reads through a
	// 256 KiB buffer and decrypts packets where they lie in it.
	c = newQuickAckConn(c)
	sc, chans, reqs, err := ssh.NewServerConn(c, g.ssh)
	handshakeDone(c)
	g.authenticated(src)
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

// LoadOrCreateHostKey reads the host key at path, creating an Ed25519 key
// (mode 0600) the first time, so the gateway's fingerprint stays the same
// across restarts.
func LoadOrCreateHostKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, "dspool gateway host key")
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create host key %s: %w", path, err)
		}
		if _, err := f.Write(pem.EncodeToMemory(blk)); err != nil {
			f.Close()
			return nil, fmt.Errorf("write host key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w (remove it to make a new one; clients will see a new fingerprint)", path, err)
	}
	return s, nil
}
