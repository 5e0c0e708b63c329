package sshgw

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/backoff"
	"github.com/dspool/dspool/tlsca"
)

// Remote is the Backend of a gateway in a process of its own (`dspool
// gateway`, docs/decisions/0019-ssh-gateway-apart.md): it reaches the
// control plane through its API, and takes the channels' connections from
// the nodes on a TLS listener of its own, known to them by its key's pin.
// It keeps no state of its own beyond its open connections: a restart of
// the control plane leaves them open, and its heartbeat takes them up again.
type Remote struct {
	c         *api.Client
	id        string
	advertise string
	pin       string
	ln        net.Listener
	log       *slog.Logger
	beat      time.Duration

	mu      sync.Mutex
	pending map[string]*pendingStreams
	conns   map[string]*remoteSession
	closing []string // connections ended here, not yet told
	kick    chan struct{}
	stop    chan struct{}
	stopped sync.Once
}

// RemoteConfig configures a Remote.
type RemoteConfig struct {
	// Client calls the control plane with a token that has the gateway
	// scope.
	Client *api.Client
	// Listener takes the nodes' connections (TCP; Remote adds TLS), and
	// Advertise is the HOST:PORT they dial to reach it.
	Listener  net.Listener
	Advertise string
	// Heartbeat is how often the connections are reported.
	Heartbeat time.Duration
	Logger    *slog.Logger
}

// pendingStreams are the connections a node is to open for one channel.
type pendingStreams struct {
	frames chan *streamConn
	data   chan *streamConn
}

// streamConn is a node's connection, with the mode its frames said. The
// connection is handed on as it is (not wrapped), so that its CloseWrite
// half-closes it.
type streamConn struct {
	conn net.Conn
	mode string
}

// NewRemote starts taking nodes' connections on cfg.Listener and
// reporting connections to the control plane.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	cert, pin, err := tlsca.Ephemeral()
	if err != nil {
		return nil, fmt.Errorf("the gateway's certificate for nodes: %w", err)
	}
	r := &Remote{c: cfg.Client, id: newID("g-"), advertise: cfg.Advertise, pin: pin, log: cfg.Logger,
		beat: cfg.Heartbeat, pending: map[string]*pendingStreams{}, conns: map[string]*remoteSession{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.beat <= 0 {
		r.beat = 2 * time.Second
	}
	r.ln = tls.NewListener(cfg.Listener, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	go r.accept()
	go r.heartbeats()
	return r, nil
}

// ID is this gateway's id, new at each start.
func (r *Remote) ID() string { return r.id }

// Close stops taking nodes' connections and reporting. Call it once the
// gateway is closed: it waits (up to 2 s) for the SSH connections to give
// their sessions back, and tells the control plane, so that sessions with
// no other connection end now rather than when this gateway's silence
// has lasted the node grace.
func (r *Remote) Close() {
	r.stopped.Do(func() {
		close(r.stop)
		r.ln.Close()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			r.mu.Lock()
			n := len(r.conns)
			r.mu.Unlock()
			if n == 0 {
				break
			}
		}
		if err := r.heartbeat(); err != nil {
			r.log.Warn("the control plane was not told of the connections this gateway closed; their sessions end after the node grace", "err", err)
		}
	})
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// accept takes the nodes' connections: each names, in an upgrade request,
// the token of the channel it is for.
func (r *Remote) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go r.take(c)
	}
}

func (r *Remote) take(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// One byte at a time, so that nothing after the request is read here.
	br := bufio.NewReaderSize(byteReader{c}, 16)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	tok, kind := req.Header.Get(api.DataTokenHeader), req.Header.Get(api.GatewayStreamHeader)
	r.mu.Lock()
	p := r.pending[tok]
	r.mu.Unlock()
	var ch chan *streamConn
	if p != nil && req.Header.Get("Upgrade") == api.GatewayUpgrade {
		switch kind {
		case api.GatewayStreamFrames:
			ch = p.frames
		case api.GatewayStreamData:
			ch = p.data
		}
	}
	if ch == nil {
		_, _ = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	if _, err := fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", api.GatewayUpgrade); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	select {
	case ch <- &streamConn{conn: c, mode: req.Header.Get(api.DataModeHeader)}:
	default:
		c.Close() // a second connection for the same stream
	}
}

type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) { return b.r.Read(p[:min(len(p), 1)]) }

// Authenticate asks the control plane whose key this is.
func (r *Remote) Authenticate(ctx context.Context, login dspool.Login, fp string) (*dspool.User, error) {
	return r.auth(ctx, api.GatewayAuth{User: login.User, Pool: login.Pool, Fingerprint: fp})
}

// AuthenticatePassword asks the control plane to check a password.
func (r *Remote) AuthenticatePassword(ctx context.Context, login dspool.Login, pw, remote string) (*dspool.User, error) {
	return r.auth(ctx, api.GatewayAuth{User: login.User, Pool: login.Pool, Password: pw, Remote: remote})
}

func (r *Remote) auth(ctx context.Context, req api.GatewayAuth) (*dspool.User, error) {
	var out api.GatewayAuthReply
	if err := r.c.Do(ctx, "POST", "/api/v1/gateway/auth", req, &out); err != nil {
		return nil, err
	}
	if out.Refused != nil {
		if out.RetryAfter > 0 {
			return out.User, throttled{out.Refused, time.Duration(out.RetryAfter)}
		}
		return out.User, out.Refused
	}
	if out.User == nil {
		return nil, errors.New("the control plane answered without a user")
	}
	return out.User, nil
}

// throttled is a refusal of a password login that may be tried again
// after a while.
type throttled struct {
	err  *dspool.Error
	wait time.Duration
}

func (t throttled) Error() string             { return t.err.Error() }
func (t throttled) RetryAfter() time.Duration { return t.wait }
func (t throttled) Unwrap() error             { return t.err }

// Audit records an entry of the audit log with the control plane; a
// failure is logged here.
func (r *Remote) Audit(ctx context.Context, e dspool.AuditEntry) {
	if err := r.c.Do(ctx, "POST", "/api/v1/gateway/audit", e, nil); err != nil {
		r.log.Warn("audit entry not recorded", "action", e.Action, "actor", e.Actor, "outcome", e.Outcome, "err", err)
	}
}

// OpenSession opens a connection's session through the control plane.
func (r *Remote) OpenSession(ctx context.Context, u *dspool.User, pool, remote, how string, progress func(string)) (Session, error) {
	conn := newID("c-")
	body, err := r.c.Stream(ctx, "POST", "/api/v1/gateway/sessions", api.GatewayOpen{Gateway: r.id, Conn: conn, User: u.Name, Pool: pool, Remote: remote, How: how})
	if err != nil {
		return nil, err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var e api.GatewayOpenEvent
		if err := dec.Decode(&e); err != nil {
			return nil, dspool.Errorf(dspool.EUnavailable, "the control plane broke off while opening the session: %v", err)
		}
		switch {
		case e.Error != nil:
			return nil, e.Error
		case e.Session != nil:
			s := &remoteSession{r: r, conn: conn, id: e.Session.ID, node: e.Session.NodeName, landed: e.Session.Landed, user: u.Name, how: how, done: make(chan struct{})}
			r.mu.Lock()
			r.conns[conn] = s
			r.mu.Unlock()
			return s, nil
		case e.Progress != "" && progress != nil:
			progress(e.Progress)
		}
	}
}

// heartbeats reports the connections every beat, and at once after a
// connection ended here. While the control plane cannot be reached the
// connections go on, and are reported once it can.
func (r *Remote) heartbeats() {
	t := time.NewTimer(r.beat)
	defer t.Stop()
	var fails int
	var warned time.Time
	retry := backoff.Backoff{Min: r.beat / 4, Max: r.beat}
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		case <-r.kick:
		}
		err := r.heartbeat()
		next := r.beat
		if err != nil {
			fails++
			next = retry.Next()
			if time.Since(warned) > time.Minute {
				warned = time.Now()
				r.log.Warn("cannot reach the control plane; open SSH connections go on, and are reported once it answers", "err", err)
			}
		} else if fails > 0 {
			r.log.Info("the control plane answers again", "after_failures", fails)
			fails = 0
			retry.Reset()
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

func (r *Remote) heartbeat() error {
	type sent struct {
		s       *remoteSession
		in, out int64
	}
	r.mu.Lock()
	hb := api.GatewayHeartbeat{Gateway: r.id, Conns: make([]api.GatewayConnActivity, 0, len(r.conns))}
	var sents []sent
	for _, s := range r.conns {
		in, out := s.in.Load(), s.out.Load()
		hb.Conns = append(hb.Conns, api.GatewayConnActivity{Conn: s.conn, Session: s.id, User: s.user, How: s.how, In: in, Out: out})
		sents = append(sents, sent{s, in, out})
	}
	closing := r.closing
	r.closing = nil
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(closing) > 0 {
		if err := r.c.Do(ctx, "POST", "/api/v1/gateway/close", api.GatewayClose{Gateway: r.id, Conns: closing}, nil); err != nil {
			// The next heartbeat leaves them out: that closes them too.
			r.log.Debug("close connections", "err", err)
		}
	}
	var reply api.GatewayHeartbeatReply
	if err := r.c.Do(ctx, "POST", "/api/v1/gateway/heartbeat", hb, &reply); err != nil {
		return err
	}
	for _, x := range sents {
		x.s.in.Add(-x.in)
		x.s.out.Add(-x.out)
	}
	for _, e := range reply.End {
		r.mu.Lock()
		s := r.conns[e.Conn]
		r.mu.Unlock()
		if s != nil {
			s.end(e)
		}
	}
	return nil
}

// remoteSession is one SSH connection's hold on its session, through the
// control plane's API.
type remoteSession struct {
	r                  *Remote
	conn, id, node     string
	user, how, landed  string
	in, out            atomic.Int64 // bytes not yet reported
	done               chan struct{}
	endOnce, closeOnce sync.Once
	ending             atomic.Pointer[api.GatewayConnEnd]
}

func (s *remoteSession) ID() string       { return s.id }
func (s *remoteSession) NodeName() string { return s.node }
func (s *remoteSession) Landed() string   { return s.landed }
func (s *remoteSession) In(n int)         { s.in.Add(int64(n)) }
func (s *remoteSession) Out(n int)        { s.out.Add(int64(n)) }

func (s *remoteSession) Done() <-chan struct{} { return s.done }

func (s *remoteSession) Reason() string {
	if e := s.ending.Load(); e != nil {
		return e.Reason
	}
	return ""
}

func (s *remoteSession) CredentialGone() bool {
	e := s.ending.Load()
	return e != nil && e.CredentialGone
}

func (s *remoteSession) UserDisabled() bool {
	e := s.ending.Load()
	return e != nil && e.UserDisabled
}

func (s *remoteSession) end(e api.GatewayConnEnd) {
	s.endOnce.Do(func() {
		s.ending.Store(&e)
		close(s.done)
	})
}

// Close gives the connection's hold back: at once when the control plane
// answers, else by the next heartbeat that does, which no longer lists it.
func (s *remoteSession) Close() {
	s.closeOnce.Do(func() {
		r := s.r
		r.mu.Lock()
		delete(r.conns, s.conn)
		r.closing = append(r.closing, s.conn)
		r.mu.Unlock()
		select {
		case r.kick <- struct{}{}:
		default:
		}
	})
}

// Channel starts a process of the session: the node opens the channel's
// connections to this gateway.
func (s *remoteSession) Channel(ctx context.Context, req api.ChannelRequest) (net.Conn, net.Conn, error) {
	tok, p := s.r.expect()
	defer s.r.forget(tok)
	err := s.r.c.Do(ctx, "POST", "/api/v1/gateway/channel", api.GatewayChannel{Gateway: s.r.id, Conn: s.conn, Kind: req.Kind,
		Command: req.Command, PTY: req.PTY, Env: req.Env, Client: req.Client, Server: req.Server, Dial: s.r.dial(tok)}, nil)
	if err != nil {
		return nil, nil, err
	}
	frames, err := await(ctx, p.frames)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s did not open the channel: %w", s.node, err)
	}
	if frames.mode != api.DataModeConn {
		return frames.conn, nil, nil
	}
	data, err := await(ctx, p.data)
	if err != nil {
		frames.conn.Close()
		return nil, nil, fmt.Errorf("node %s did not open the channel's data connection: %w", s.node, err)
	}
	return frames.conn, data.conn, nil
}

// Forward connects to host:port as seen from the session's node.
func (s *remoteSession) Forward(ctx context.Context, host string, port int) (net.Conn, error) {
	tok, p := s.r.expect()
	defer s.r.forget(tok)
	err := s.r.c.Do(ctx, "POST", "/api/v1/gateway/forward", api.GatewayForward{Gateway: s.r.id, Conn: s.conn, Host: host, Port: port, Dial: s.r.dial(tok)}, nil)
	if err != nil {
		return nil, err
	}
	c, err := await(ctx, p.frames)
	if err != nil {
		return nil, fmt.Errorf("node %s did not open the forward: %w", s.node, err)
	}
	return c.conn, nil
}

func (r *Remote) dial(tok string) api.Dial {
	return api.Dial{Addr: r.advertise, Pin: r.pin, Token: tok}
}

func (r *Remote) expect() (string, *pendingStreams) {
	tok := newID("")
	p := &pendingStreams{frames: make(chan *streamConn, 1), data: make(chan *streamConn, 1)}
	r.mu.Lock()
	r.pending[tok] = p
	r.mu.Unlock()
	return tok, p
}

// forget drops a channel's token; a connection that came for it and was
// not taken is closed.
func (r *Remote) forget(tok string) {
	r.mu.Lock()
	p := r.pending[tok]
	delete(r.pending, tok)
	r.mu.Unlock()
	for _, ch := range []chan *streamConn{p.frames, p.data} {
		select {
		case c := <-ch:
			c.conn.Close()
		default:
		}
	}
}

// await takes a node's connection; the node opens them before its answer,
// so they have come or are on their way.
func await(ctx context.Context, ch chan *streamConn) (*streamConn, error) {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case c := <-ch:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("timed out")
	}
}
