package dspooltest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Link is a TCP proxy between one agent and the server that a test can cut
// (a network partition: connections drop and new ones are refused) and
// restore.
type Link struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	cut     bool
	stalled bool
	conns   map[net.Conn]bool
}

func newLink(t testing.TB, target string) *Link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Link{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go l.serve()
	t.Cleanup(func() { ln.Close(); l.Cut() })
	return l
}

// URL is the address the agent dials.
func (l *Link) URL() string { return "http://" + l.ln.Addr().String() }

func (l *Link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c], l.conns[up] = true, true
		l.mu.Unlock()
		// Each direction passes its end on as a half-close, as TCP does;
		// an error in either closes both.
		var wg sync.WaitGroup
		wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			if _, err := io.Copy(l.gate(dst), src); err != nil {
				dst.Close()
				src.Close()
				return
			}
			_ = dst.(*net.TCPConn).CloseWrite()
		}
		go pipe(up, c)
		go pipe(c, up)
		go func() { wg.Wait(); up.Close(); c.Close() }()
	}
}

// Cut drops every connection through the link and refuses new ones.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
	l.conns = map[net.Conn]bool{}
}

// Stall makes the link a black hole: connections stay open but nothing
// gets through (a silent partition, found only by timeouts).
func (l *Link) Stall() {
	l.mu.Lock()
	l.stalled = true
	l.mu.Unlock()
}

// Restore lets connections through again.
func (l *Link) Restore() {
	l.mu.Lock()
	l.cut, l.stalled = false, false
	l.mu.Unlock()
}

// gate drops what is written through it while the link is stalled.
func (l *Link) gate(w io.Writer) io.Writer { return gateWriter{l, w} }

type gateWriter struct {
	l *Link
	w io.Writer
}

func (g gateWriter) Write(p []byte) (int, error) {
	g.l.mu.Lock()
	stalled := g.l.stalled
	g.l.mu.Unlock()
	if stalled {
		return len(p), nil
	}
	return g.w.Write(p)
}
