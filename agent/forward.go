package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// serveForward connects a stream to a TCP address as seen from this node,
// for `ssh -L`, within the pool's forwarding policy.
func (ag *Agent) serveForward(w http.ResponseWriter, r *http.Request) {
	var req api.ForwardRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad forward request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := ag.hostSession(req.SessionSetup); err != nil {
		http.Error(w, "set up the session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	addr, err := forwardAddr(ctx, req.Forwarding, req.Host, req.Port)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		http.Error(w, fmt.Sprintf("connect to %s:%d: %v", req.Host, req.Port, err), http.StatusBadGateway)
		return
	}
	if req.Dial != nil {
		conn, _, err := dialGateway(ctx, req.Dial, api.GatewayStreamFrames, "")
		if err != nil {
			c.Close()
			http.Error(w, fmt.Sprintf("connect to the SSH gateway at %s: %v", req.Dial.Addr, err), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		go splice(conn, c.(*net.TCPConn))
		return
	}
	conn, err := hijack(w, "")
	if err != nil {
		c.Close()
		return
	}
	splice(conn, c.(*net.TCPConn))
}

// forwardAddr resolves where a forward may go under policy: "local" allows
// only the node's loopback addresses.
func forwardAddr(ctx context.Context, policy, host string, port int) (string, error) {
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("port %d is out of range", port)
	}
	switch policy {
	case dspool.ForwardNone:
		return "", errors.New("port forwarding is off in this pool (sessions.forwarding: none)")
	case dspool.ForwardAny:
		return net.JoinHostPort(host, fmt.Sprint(port)), nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %v", host, err)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return "", fmt.Errorf("forwarding to %s is not allowed: this pool forwards only to the node itself (localhost); ask an admin for sessions.forwarding: any", host)
		}
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("resolve %s: no address", host)
	}
	return net.JoinHostPort(ips[0].IP.String(), fmt.Sprint(port)), nil
}

// splice copies both ways, passing each side's end of input on as a
// half-close, until both directions are done.
func splice(stream net.Conn, c *net.TCPConn) {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(c, stream)
		_ = c.CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(stream, c)
		// A half-close: the stream can still be read. A TLS connection
		// to a gateway (api.Dial) says so with CloseWrite; a yamux
		// stream's Close is one.
		if cw, ok := stream.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = stream.Close()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	stream.Close()
	c.Close()
}
