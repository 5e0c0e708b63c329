package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// RedirectPlainHTTP wraps the listener under a TLS listener so that a
// request in plain HTTP (an address typed into a browser without https://)
// is answered with a redirect to the same address over HTTPS, where Go's
// TLS server would answer a bare 400. The first byte of a connection tells
// them apart: a TLS handshake starts with 0x16, an HTTP request with a
// letter. The answer is written on the connection's own goroutine, at its
// first read, never in the accept loop.
func RedirectPlainHTTP(ln net.Listener) net.Listener { return plainListener{ln} }

type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c}, nil
}

// sniffConn looks at its first byte before TLS does.
type sniffConn struct {
	net.Conn
	once sync.Once
	err  error
	r    io.Reader // what TLS reads: the bytes looked at, then the rest
}

// errPlainHTTP ends a connection that was answered in plain HTTP.
var errPlainHTTP = errors.New("a plain HTTP request on the HTTPS port, answered with a redirect")

func (c *sniffConn) Read(p []byte) (int, error) {
	c.once.Do(c.sniff)
	if c.err != nil {
		return 0, c.err
	}
	return c.r.Read(p)
}

func (c *sniffConn) sniff() {
	br := bufio.NewReaderSize(c.Conn, 4096)
	c.r = br
	first, err := br.Peek(1)
	if err != nil || first[0] == 0x16 || first[0] < 'A' || first[0] > 'Z' {
		return // TLS, or nothing HTTP: TLS answers it
	}
	c.err = errPlainHTTP
	_ = c.Conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	// The same name, on the port the request came to (the one this
	// listener serves HTTPS on).
	name := req.Host
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	host := name
	if _, port, err := net.SplitHostPort(c.Conn.LocalAddr().String()); err == nil && port != "443" {
		host = net.JoinHostPort(strings.Trim(name, "[]"), port)
	}
	u := url.URL{Scheme: "https", Host: host, Path: req.URL.Path, RawQuery: req.URL.RawQuery}
	if name == "" || strings.ContainsAny(name, "/\\@ \r\n") || !strings.HasPrefix(req.URL.Path, "/") {
		body := "This address serves HTTPS only: open it with https://.\n"
		fmt.Fprintf(c.Conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		return
	}
	body := "This address serves HTTPS only: " + u.String() + "\n"
	fmt.Fprintf(c.Conn, "HTTP/1.1 308 Permanent Redirect\r\nLocation: %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		u.String(), len(body), body)
}

// CloseWrite keeps half-closes working beneath TLS.
func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
