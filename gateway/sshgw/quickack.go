package sshgw

import (
	"net"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// quickAckConn acknowledges what it reads at once while on is set, rather
// than after Linux's delayed-ACK timer (40 ms). During the key exchange and
// authentication an OpenSSH client sends a small packet while its previous
// one is still unacknowledged, and Nagle's algorithm holds it back until the
// ACK comes: without this, two such waits made most logins 80 ms slower.
type quickAckConn struct {
	*net.TCPConn
	on atomic.Bool
}

func newQuickAckConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	q := &quickAckConn{TCPConn: tc}
	q.on.Store(true)
	q.quickAck()
	return q
}

func (q *quickAckConn) Read(p []byte) (int, error) {
	n, err := q.TCPConn.Read(p)
	if n > 0 && q.on.Load() {
		q.quickAck() // Linux turns quick ACKs off again by itself
	}
	return n, err
}

func (q *quickAckConn) quickAck() {
	if rc, err := q.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
		})
	}
}

// handshakeDone goes back to the kernel's delayed ACKs, which cost nothing
// once the client sends a stream of data or waits for answers.
func handshakeDone(c net.Conn) {
	if q, ok := c.(*quickAckConn); ok {
		q.on.Store(false)
	}
}
