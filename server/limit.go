package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/dspool/dspool/internal/frontdoor"
)

// MaxConns bounds the connections the HTTP front end holds at once (agents'
// connections, browsers, API clients); more wait in the listen queue.
const MaxConns = 4096

// MaxConnsPerSource bounds the connections one source (an IPv4 address,
// an IPv6 /64) holds at once, so that one client cannot take the slots of
// MaxConns from everyone else. Agents' connections leave the count once
// they are authenticated (a pool's agents may share one address, as those
// of `dspool up` do on 127.0.0.1). The limit sees TCP peers, before any
// request is read: behind a load balancer it applies to the balancer's
// own addresses (whose X-Forwarded-For it cannot read), so raise it there
// or let the balancer bound its clients.
const MaxConnsPerSource = 256

// Limits bounds the connections of a LimitListener. Zero values mean the
// defaults.
type Limits struct {
	Total     int // default MaxConns
	PerSource int // default MaxConnsPerSource
	// Logger gets a warning, at most one per 10 s, when connections are
	// refused.
	Logger *slog.Logger
	// Busy, when set, answers a connection refused for its source's limit
	// before it is closed (BusyAnswer: a 503 with Retry-After, which tells
	// clients to come back later rather than fail). At most MaxBusy such
	// answers are under way at once; past that a refused connection is
	// closed at once.
	Busy func(net.Conn)
}

// MaxBusy bounds the refused connections being answered at once.
const MaxBusy = 64

// busyTimeout bounds how long answering a refused connection may take.
const busyTimeout = 5 * time.Second

// BusyAnswer returns a Limits.Busy that answers one request on a refused
// connection (over TLS with cfg when it is not nil) with 503 Service
// Unavailable and Retry-After: 1, within a few seconds, and closes it. A
// 503 with Retry-After is the server's word that it did nothing with the
// request: clients may send it again, whatever its method.
func BusyAnswer(cfg *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(busyTimeout))
		if cfg != nil {
			tc := tls.Server(c, cfg)
			if tc.Handshake() != nil {
				return
			}
			c = tc
		}
		req, err := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(c, 64<<10), 4096))
		if err != nil {
			return
		}
		_ = req.Body.Close()
		body := `{"error":{"code":"unavailable","message":"too many connections from your address: try again in a second"}}` + "\n"
		fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		if tc, ok := c.(*tls.Conn); ok {
			_ = tc.CloseWrite()
		}
	}
}

// LimitListener accepts at most l.Total connections at a time (more wait in
// the listen queue) and at most l.PerSource from one source: one more from
// that source is closed at once, counted, and warned of.
func LimitListener(ln net.Listener, l Limits) *Listener {
	if l.Total <= 0 {
		l.Total = MaxConns
	}
	if l.PerSource <= 0 {
		l.PerSource = MaxConnsPerSource
	}
	return &Listener{Listener: ln, limits: l, sem: make(chan struct{}, l.Total), busy: make(chan struct{}, MaxBusy), bySource: map[string]int{},
		warn: &frontdoor.Warner{Log: l.Logger, Msg: "http connection refused: too many connections from one address"}}
}

// Listener is a listener with connection limits (LimitListener).
type Listener struct {
	net.Listener
	limits Limits
	sem    chan struct{}
	busy   chan struct{} // answers to refused connections under way
	warn   *frontdoor.Warner

	mu       sync.Mutex
	bySource map[string]int
	refused  int64
}

// Refused is how many connections were closed for the per-source limit.
func (l *Listener) Refused() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused
}

func (l *Listener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		src := frontdoor.Source(c.RemoteAddr())
		l.mu.Lock()
		n := l.bySource[src]
		if n >= l.limits.PerSource {
			l.refused++
			l.mu.Unlock()
			l.turnAway(c)
			l.warn.Warn("remote", src, "limit", l.limits.PerSource)
			continue
		}
		l.bySource[src] = n + 1
		l.mu.Unlock()
		lc := &limitConn{Conn: c, l: l, src: src}
		return lc, nil
	}
}

// turnAway closes a connection refused for its source's limit, answering
// it first when Busy is set and fewer than MaxBusy answers are under way.
func (l *Listener) turnAway(c net.Conn) {
	if l.limits.Busy == nil {
		c.Close()
		return
	}
	select {
	case l.busy <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.busy }()
		l.limits.Busy(c)
	}()
}

// leave takes a connection of src off the per-source count.
func (l *Listener) leave(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

type limitConn struct {
	net.Conn
	l        *Listener
	src      string
	once     sync.Once // releases the total's slot
	leaveSrc sync.Once // leaves the source's count

	// While held, writes (TLS records, when the connection is under TLS)
	// gather in wbuf and reach the socket together (batchWrites).
	wmu   sync.Mutex
	held  bool
	wbuf  []byte
	wfail error
}

// maxBatch is how many bytes of held writes are gathered before they are
// written out.
const maxBatch = 256 << 10

func (c *limitConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.held {
		return c.Conn.Write(p)
	}
	if c.wfail != nil {
		return 0, c.wfail
	}
	c.wbuf = append(c.wbuf, p...)
	if len(c.wbuf) >= maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *limitConn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.wfail = err
	}
	return err
}

// hold starts gathering writes; release writes out what was gathered and
// stops.
func (c *limitConn) hold() {
	c.wmu.Lock()
	c.held = true
	c.wmu.Unlock()
}

func (c *limitConn) release() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.held = false
	err := c.flushLocked()
	if err == nil {
		err = c.wfail
	}
	return err
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.sem })
	c.exempt()
	return err
}

// exempt takes the connection off its source's count; it still holds a
// slot of the total.
func (c *limitConn) exempt() { c.leaveSrc.Do(func() { c.l.leave(c.src) }) }

// CloseWrite keeps half-closes working through the limit (data
// connections of sessions use them).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// exemptFromSource takes an authenticated agent's connection (hijacked
// from the HTTP server, perhaps under TLS) off its source's count.
func exemptFromSource(c net.Conn) {
	if lc, ok := limitConnOf(c); ok {
		lc.exempt()
	}
}

// limitConnOf returns the limitConn beneath c: under TLS, and under the
// look at its first byte (RedirectPlainHTTP).
func limitConnOf(c net.Conn) (*limitConn, bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if sc, ok := c.(*sniffConn); ok {
		c = sc.Conn
	}
	lc, ok := c.(*limitConn)
	return lc, ok
}
