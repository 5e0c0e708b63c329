package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dspool/dspool/api"
)

// dial opens the upgraded connection to the server, and returns the
// headers of the server's answer with it.
func (ag *Agent) dial(ctx context.Context) (net.Conn, *bufio.Reader, http.Header, error) {
	// The reader is also the connection's read buffer: a large one reads
	// bulk session output in few system calls.
	return ag.upgrade(ctx, "/api/v1/agents/connect", api.AgentUpgrade, nil, 256<<10)
}

// dialUpgrade opens a connection to the server and upgrades it with a GET
// of path, authenticated by the node's credential. The reader holds what
// the server sent after its answer; with bufSize 0 it holds nothing, as the
// answer is read a byte at a time.
func (ag *Agent) dialUpgrade(ctx context.Context, path, upgrade string, header http.Header, bufSize int) (net.Conn, *bufio.Reader, error) {
	conn, br, _, err := ag.upgrade(ctx, path, upgrade, header, bufSize)
	return conn, br, err
}

func (ag *Agent) upgrade(ctx context.Context, path, upgrade string, header http.Header, bufSize int) (net.Conn, *bufio.Reader, http.Header, error) {
	var cfg *tls.Config
	if strings.HasPrefix(ag.cfg.Server, "https:") {
		cfg = ag.tls
	}
	return upgradeAt(ctx, ag.cfg.Server, cfg, "Bearer "+ag.cred, path, upgrade, header, bufSize)
}

// upgradeAt opens a connection to base (a URL) and upgrades it with a GET
// of path; tlsCfg is the TLS configuration for an https base, auth the
// Authorization header ("" for none).
func upgradeAt(ctx context.Context, base string, tlsCfg *tls.Config, auth, path, upgrade string, header http.Header, bufSize int) (net.Conn, *bufio.Reader, http.Header, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server URL: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
	var conn net.Conn
	if u.Scheme == "https" {
		cfg := tlsCfg.Clone()
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		var raw net.Conn
		raw, err = d.DialContext(ctx, "tcp", host)
		if err == nil {
			_ = raw.SetDeadline(time.Now().Add(d.Timeout))
			tc := tls.Client(&rawConn{Conn: raw}, cfg)
			if err = tc.HandshakeContext(ctx); err != nil {
				raw.Close()
			}
			conn = tc
		}
	} else {
		conn, err = d.DialContext(ctx, "tcp", host)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	req, _ := http.NewRequest("GET", base+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", upgrade)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	var br *bufio.Reader
	if bufSize == 0 {
		// The answer is read a byte at a time: what follows it stays in
		// the socket, for whoever the socket is handed to.
		br = bufio.NewReaderSize(byteReader{conn}, 16)
	} else {
		br = bufio.NewReaderSize(conn, bufSize)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		var eb api.ErrorBody
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		conn.Close()
		if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
			return nil, nil, nil, eb.Error
		}
		return nil, nil, nil, fmt.Errorf("server refused the %s connection: %s", upgrade, resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, resp.Header, nil
}

// byteReader reads one byte per call.
type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) { return b.r.Read(p[:min(len(p), 1)]) }

type readConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// rawConn is the TCP connection under TLS: it reads the socket in large
// reads (crypto/tls reads about a record, 16 KiB, per system call), and
// calls wait, when set, before a read that may block (all it had read has
// been taken).
type rawConn struct {
	net.Conn
	buf  []byte
	r, w int
	wait func() error
}

// rawReadSize is how much a rawConn reads at once.
const rawReadSize = 256 << 10

func (c *rawConn) Read(p []byte) (int, error) {
	if c.r == c.w {
		if c.wait != nil {
			if err := c.wait(); err != nil {
				return 0, err
			}
		}
		if len(p) >= rawReadSize {
			return c.Conn.Read(p)
		}
		if c.buf == nil {
			c.buf = make([]byte, rawReadSize)
		}
		n, err := c.Conn.Read(c.buf)
		c.r, c.w = 0, max(n, 0)
		if n <= 0 {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}
