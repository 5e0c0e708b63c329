package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// Streams the control plane opens to agents for sessions (upgraded HTTP
// requests on the agent's connection), and the data connections agents
// open back for a session channel's stdin and stdout.

// upgrade opens a stream to an agent and upgrades it with a POST of body;
// it returns the stream and the agent's answer's header. A refusal is
// returned as an error carrying the agent's message.
func (h *hub) upgrade(ctx context.Context, node, path string, body any) (net.Conn, http.Header, error) {
	ac := h.conn(node)
	if ac == nil {
		return nil, nil, fmt.Errorf("node %s is not connected", node)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	stream, err := ac.sess.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open a stream to node %s: %w", node, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = stream.SetDeadline(dl)
	}
	req, _ := http.NewRequest("POST", "http://agent"+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.SessionUpgrade)
	if err := req.Write(stream); err != nil {
		stream.Close()
		return nil, nil, fmt.Errorf("node %s: %w", node, err)
	}
	br := bufio.NewReader(stream)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		stream.Close()
		return nil, nil, fmt.Errorf("node %s: %w", node, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		stream.Close()
		return nil, nil, &agentRefusal{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	_ = stream.SetDeadline(time.Time{})
	return &bufConn{Conn: stream, r: br}, resp.Header, nil
}

// ask sends one request to an agent over its connection and returns the
// headers of its answer; an answer other than 2xx is the agent's refusal,
// with its message.
func (h *hub) ask(ctx context.Context, node, path string, body any) (http.Header, error) {
	ac := h.conn(node)
	if ac == nil {
		return nil, fmt.Errorf("node %s is not connected", node)
	}
	return h.askConn(ctx, ac, path, body)
}

// askConn is ask over the connection ac.
func (h *hub) askConn(ctx context.Context, ac *agentConn, path string, body any) (http.Header, error) {
	node := ac.node
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://agent"+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := ac.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call node %s %s: %w", node, path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode >= 300 {
		return nil, &agentRefusal{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	return resp.Header, nil
}

// pendingData is a data connection the control plane expects from a node.
// Guarded by hub.mu.
type pendingData struct {
	node  string
	conn  net.Conn      // set when it arrives
	ready chan struct{} // closed when it arrives
	gone  bool          // nobody waits any more: close what arrives
}

// expectData returns a new token for a data connection from node.
func (h *hub) expectData(node string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	h.mu.Lock()
	h.data[tok] = &pendingData{node: node, ready: make(chan struct{})}
	h.mu.Unlock()
	return tok
}

// forgetData drops a token; a connection that arrived for it and was not
// taken is closed.
func (h *hub) forgetData(tok string) {
	h.mu.Lock()
	p := h.data[tok]
	delete(h.data, tok)
	var leftover net.Conn
	if p != nil {
		p.gone = true
		leftover, p.conn = p.conn, nil
	}
	h.mu.Unlock()
	if leftover != nil {
		leftover.Close()
	}
}

func (h *hub) awaitData(ctx context.Context, tok string) (net.Conn, error) {
	h.mu.Lock()
	p := h.data[tok]
	h.mu.Unlock()
	if p == nil {
		return nil, errors.New("unknown data token")
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.ready:
		h.mu.Lock()
		c := p.conn
		p.conn = nil
		h.mu.Unlock()
		if c == nil {
			return nil, errors.New("taken twice")
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("timed out")
	}
}

// data takes a node's data connection for a session channel: GET
// /api/v1/agents/data with the node's credential and the channel's token.
func (h *hub) acceptData(w http.ResponseWriter, r *http.Request) {
	node, err := h.s.db.NodeByCredential(r.Context(), HashSecret(bearer(r)))
	if err != nil {
		h.s.fail(w, r, err)
		return
	}
	if r.Header.Get("Upgrade") != api.DataUpgrade {
		h.s.fail(w, r, dspool.Invalid("Upgrade", "a data connection needs Upgrade: %s", api.DataUpgrade))
		return
	}
	tok := r.Header.Get(api.DataTokenHeader)
	h.mu.Lock()
	p := h.data[tok]
	ok := p != nil && p.node == node.ID && !p.gone && p.conn == nil && !closed(p.ready)
	h.mu.Unlock()
	if !ok {
		h.s.fail(w, r, dspool.Errorf(dspool.ENotFound, "no channel of this node expects a data connection with that token"))
		return
	}
	c, err := h.s.switchProtocols(w, r, api.DataUpgrade)
	if err != nil {
		return
	}
	conn := batchWrites(c)
	h.mu.Lock()
	if p.gone || closed(p.ready) {
		h.mu.Unlock()
		conn.Close()
		return
	}
	p.conn = conn
	close(p.ready)
	h.mu.Unlock()
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// agentRefusal is an agent's answer other than 101.
type agentRefusal struct {
	status int
	msg    string
}

func (e *agentRefusal) Error() string { return e.msg }

// IsRefusal reports whether err is the node's refusal (its message is meant
// for the user) rather than a broken connection.
func IsRefusal(err error) bool {
	var r *agentRefusal
	return errors.As(err, &r)
}
