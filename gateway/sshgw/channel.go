package sshgw

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/gateway/internal/ssh"
)

// The channels of a connection: session channels (a shell, a command, the
// sftp subsystem), each carried to its process on the node, and
// direct-tcpip channels (ssh -L, -D), each a connection made from the node.

// forward serves a direct-tcpip channel (ssh -L) through the node.
func (cc *clientConn) forward(nc ssh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil || p.Port > 65535 {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if !cc.await(io.Discard, false) {
		return
	}
	if cc.sess == nil {
		_ = nc.Reject(ssh.Prohibited, cc.refusal)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	stream, err := cc.sess.Forward(ctx, p.Host, int(p.Port))
	cancel()
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "dspool: "+err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		stream.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() {
		n, _ := io.Copy(stream, ch)
		cc.sess.In(int(n))
		// A half-close: the answer still comes back.
		if cw, ok := stream.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = stream.Close() // a yamux stream's Close is one
		}
		done <- struct{}{}
	}()
	go func() {
		n, _ := io.Copy(ch, stream)
		cc.sess.Out(int(n))
		_ = ch.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
	ch.Close()
	stream.Close()
}

// channel is one session channel: a shell, command or subsystem.
type channel struct {
	cc *clientConn
	ch ssh.Channel

	mu      sync.Mutex
	fw      *api.FrameWriter
	stream  net.Conn
	data    net.Conn // stdin and stdout, when not in frames
	done    bool
	aborted bool
}

func (cc *clientConn) session(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	c := &channel{cc: cc, ch: ch}
	cc.mu.Lock()
	ended := cc.ended
	cc.channels[c] = struct{}{}
	cc.mu.Unlock()
	defer func() {
		cc.mu.Lock()
		delete(cc.channels, c)
		cc.mu.Unlock()
	}()
	if ended != "" {
		c.abort(ended)
		return
	}
	req := api.ChannelRequest{Env: map[string]string{}, Client: hostPort(cc.sc.RemoteAddr()), Server: hostPort(cc.sc.LocalAddr())}
	for r := range reqs {
		switch r.Type {
		case "pty-req":
			var p struct {
				Term          string
				Cols, Rows    uint32
				Width, Height uint32
				Modes         string
			}
			if c.started() || ssh.Unmarshal(r.Payload, &p) != nil || len(p.Term) > 64 {
				_ = r.Reply(false, nil)
				continue
			}
			req.PTY = &api.PTY{Term: p.Term, Cols: p.Cols, Rows: p.Rows}
			_ = r.Reply(true, nil)
		case "env":
			var p struct{ Name, Value string }
			if c.started() || ssh.Unmarshal(r.Payload, &p) != nil || len(req.Env) >= 64 {
				_ = r.Reply(false, nil)
				continue
			}
			req.Env[p.Name] = p.Value
			_ = r.Reply(r.WantReply, nil)
		case "shell", "exec", "subsystem":
			if c.started() {
				_ = r.Reply(false, nil)
				continue
			}
			req.Kind = r.Type
			if r.Type != "shell" {
				var p struct{ Command string }
				if ssh.Unmarshal(r.Payload, &p) != nil {
					_ = r.Reply(false, nil)
					continue
				}
				req.Command = p.Command
			}
			if !c.start(r, req) {
				return
			}
		case "window-change":
			var p struct{ Cols, Rows, Width, Height uint32 }
			if ssh.Unmarshal(r.Payload, &p) == nil {
				b := make([]byte, 8)
				binary.BigEndian.PutUint32(b, p.Cols)
				binary.BigEndian.PutUint32(b[4:], p.Rows)
				c.control(api.FrameWindow, b)
			}
			_ = r.Reply(r.WantReply, nil)
		case "signal":
			var p struct{ Signal string }
			if ssh.Unmarshal(r.Payload, &p) == nil {
				c.control(api.FrameSignal, []byte(p.Signal))
			}
			_ = r.Reply(r.WantReply, nil)
		default:
			// auth-agent-req@openssh.com (agent forwarding), x11-req,
			// break and the rest: refused.
			_ = r.Reply(false, nil)
		}
	}
}

func hostPort(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return ""
	}
	return host + " " + port
}

func (c *channel) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream != nil || c.done
}

func (c *channel) control(typ byte, b []byte) {
	c.mu.Lock()
	fw := c.fw
	c.mu.Unlock()
	if fw != nil {
		_ = fw.WriteFrame(typ, b)
	}
}

// start opens the process on the node and pumps the channel. It returns
// false when the channel is finished.
func (c *channel) start(r *ssh.Request, req api.ChannelRequest) bool {
	if !c.cc.await(c.ch.Stderr(), req.PTY != nil) {
		return false
	}
	sess := c.cc.sess
	if sess == nil {
		_, _ = fmt.Fprintf(c.ch.Stderr(), "%s\r\n", c.cc.refusal)
		c.exit(r, api.Exit{Status: 255})
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	stream, data, err := sess.Channel(ctx, req)
	cancel()
	if err != nil {
		_, _ = fmt.Fprintf(c.ch.Stderr(), "dspool: %s could not start on node %s: %v\r\n", req.Kind, sess.NodeName(), err)
		c.exit(r, api.Exit{Status: 255})
		return false
	}
	c.mu.Lock()
	c.stream, c.data = stream, data
	c.fw = api.NewFrameWriter(stream)
	aborted := c.aborted
	c.mu.Unlock()
	if aborted {
		stream.Close()
		if data != nil {
			data.Close()
		}
		return false
	}
	_ = r.Reply(true, nil)
	if req.Kind == api.ChannelShell {
		if msg := sess.Landed(); msg != "" {
			_, _ = fmt.Fprintf(c.ch.Stderr(), "%s\r\n", msg)
		}
	}
	go c.input()
	go c.output()
	return true
}

// exit answers the request (if it waits for one) with success, reports e
// and closes the channel.
func (c *channel) exit(r *ssh.Request, e api.Exit) {
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
	if r != nil {
		_ = r.Reply(true, nil)
	}
	sendExit(c.ch, e)
	_ = c.ch.Close()
}

func sendExit(ch ssh.Channel, e api.Exit) {
	if e.Signal != "" {
		_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Message    string
			Lang       string
		}{e.Signal, false, e.Message, ""}))
	} else {
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(e.Status)}))
	}
	_ = ch.CloseWrite()
}

// input carries the client's bytes to the process.
func (c *channel) input() {
	if c.data == nil {
		if _, err := c.fw.Pump(api.FrameData, c.ch, c.cc.sess.In); err == nil {
			_ = c.fw.WriteFrame(api.FrameEOF, nil)
		}
		return
	}
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(counter{c.data, c.cc.sess.In}, c.ch, buf); err == nil {
		if cw, ok := c.data.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
}

// counter counts what is written through it.
type counter struct {
	w     io.Writer
	count func(int)
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.count(n)
	return n, err
}

// output carries the process's output and exit to the client.
func (c *channel) output() {
	fr := api.NewFrameReader(c.stream)
	defer c.stream.Close()
	stdout := make(chan struct{})
	if c.data != nil {
		defer c.data.Close()
		go func() {
			defer close(stdout)
			buf := make([]byte, 256<<10)
			_, _ = io.CopyBuffer(counter{c.ch, c.cc.sess.Out}, c.data, buf)
		}()
	} else {
		close(stdout)
	}
	for {
		typ, b, err := fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			aborted := c.aborted
			c.mu.Unlock()
			if !aborted {
				_, _ = fmt.Fprintf(c.ch.Stderr(), "\r\ndspool: lost the connection to node %s; this session has ended. Files on the share are intact; log in again for a new session.\r\n", c.cc.sess.NodeName())
				c.exit(nil, api.Exit{Status: 255})
			}
			return
		}
		switch typ {
		case api.FrameData:
			c.cc.sess.Out(len(b))
			if _, err := c.ch.Write(b); err != nil {
				return
			}
		case api.FrameStderr:
			c.cc.sess.Out(len(b))
			if _, err := c.ch.Stderr().Write(b); err != nil {
				return
			}
		case api.FrameExit:
			var e api.Exit
			if err := json.Unmarshal(b, &e); err != nil {
				e = api.Exit{Status: 255}
			}
			// The agent ends stdout before it sends the exit: all of it
			// reaches the client first.
			select {
			case <-stdout:
			case <-time.After(10 * time.Second):
			}
			c.exit(nil, e)
			return
		}
	}
}

// abort ends the channel with a message: the session was ended from outside.
func (c *channel) abort(msg string) {
	c.mu.Lock()
	if c.aborted || c.done {
		c.mu.Unlock()
		return
	}
	c.aborted = true
	stream, data := c.stream, c.data
	c.mu.Unlock()
	_, _ = io.WriteString(c.ch.Stderr(), msg)
	c.exit(nil, api.Exit{Status: 255})
	if stream != nil {
		stream.Close()
	}
	if data != nil {
		data.Close()
	}
}
