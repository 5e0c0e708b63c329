package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/dspool/dspool/tlsca"
)

// dialFrom connects to addr from the loopback address local.
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptAll accepts from ln until it is closed.
func acceptAll(t *testing.T, ln net.Listener) <-chan net.Conn {
	accepted := make(chan net.Conn, 16)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return accepted
}

func listenLoopback(t *testing.T) net.Listener {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return inner
}

func TestLimitListenerTotal(t *testing.T) {
	inner := listenLoopback(t)
	accepted := acceptAll(t, LimitListener(inner, Limits{Total: 2}))
	for range 3 {
		dialFrom(t, "127.0.0.1", inner.Addr().String())
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	second.Close()
}

// A source past its limit has its connection closed at once, while
// another source still gets in; an agent's authenticated connection
// leaves its source's count.
func TestLimitListenerPerSource(t *testing.T) {
	inner := listenLoopback(t)
	ln := LimitListener(inner, Limits{Total: 10, PerSource: 2})
	accepted := acceptAll(t, ln)
	addr := inner.Addr().String()
	dialFrom(t, "127.0.0.2", addr)
	dialFrom(t, "127.0.0.2", addr)
	held := []net.Conn{<-accepted, <-accepted}
	over := dialFrom(t, "127.0.0.2", addr)
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("the third connection of 127.0.0.2: read gave %v, want it closed", err)
	}
	if got := ln.Refused(); got != 1 {
		t.Errorf("Refused = %d, want 1", got)
	}
	dialFrom(t, "127.0.0.3", addr)
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.3" {
			t.Errorf("accepted a connection of %s, want 127.0.0.3's", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another address was not let in")
	}
	exemptFromSource(held[0])
	dialFrom(t, "127.0.0.2", addr)
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("127.0.0.2 was not let in again after one of its connections was exempted")
	}
	held[0].Close()
	held[1].Close()
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// A connection past its source's limit is told to come back later (503
// with Retry-After) when Busy is set, rather than cut off.
func TestLimitListenerAnswersBusy(t *testing.T) {
	inner := listenLoopback(t)
	ln := LimitListener(inner, Limits{Total: 10, PerSource: 1, Busy: BusyAnswer(nil)})
	accepted := acceptAll(t, ln)
	addr := inner.Addr().String()
	dialFrom(t, "127.0.0.2", addr)
	held := <-accepted
	defer held.Close()
	over := dialFrom(t, "127.0.0.2", addr)
	_ = over.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(over, "GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("the refused connection's answer: %v", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("the refused connection's answer: %s, Retry-After %q; want 503 with Retry-After 1", resp.Status, resp.Header.Get("Retry-After"))
	}
	select {
	case c := <-accepted:
		t.Errorf("the refused connection from %s reached Accept", c.RemoteAddr())
	default:
	}
}

// The limit sees through the TLS and the look at the first byte that the
// control plane puts over it: an exempted agent's connection, and one
// whose writes are batched, are found beneath both.
func TestLimitConnBeneathTLS(t *testing.T) {
	inner := listenLoopback(t)
	cert, _, err := tlsca.Ephemeral()
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(RedirectPlainHTTP(LimitListener(inner, Limits{Total: 10, PerSource: 1})), &tls.Config{Certificates: []tls.Certificate{cert}})
	accepted := acceptAll(t, ln)
	addr := inner.Addr().String()
	go func() {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := <-accepted
	defer c.Close()
	if _, ok := limitConnOf(c); !ok {
		t.Fatalf("no limitConn beneath %T", c)
	}
	if _, ok := batchWrites(&bufConn{Conn: c}).(*batchedConn); !ok {
		t.Fatal("the writes of a TLS connection over the limit are not batched")
	}
}
