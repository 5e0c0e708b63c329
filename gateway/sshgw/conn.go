package sshgw

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/gateway/internal/ssh"
)

// One authenticated connection: the session it opens (or why it opens
// none), the wait for a node, and how it ends.

// clientConn is one authenticated SSH connection.
type clientConn struct {
	g    *Gateway
	sc   *ssh.ServerConn
	user *dspool.User
	// ready is closed once sess or refusal is set; they do not change
	// after.
	ready chan struct{}
	sess  Session // nil when no session could be opened
	// refusal is shown on every channel when sess is nil.
	refusal string

	closed chan struct{} // closed when the connection ends

	mu       sync.Mutex
	channels map[*channel]struct{}
	open     int // channels of any kind open now
	ended    string
	progress string // how the wait for a node goes
}

// MaxChannels bounds the channels (shells, commands, forwards) one
// connection may have open at once, as OpenSSH's MaxSessions does.
const MaxChannels = 64

// take reserves a channel slot; false when the connection has MaxChannels.
func (cc *clientConn) take() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.open >= MaxChannels {
		return false
	}
	cc.open++
	return true
}

func (cc *clientConn) release() {
	cc.mu.Lock()
	cc.open--
	cc.mu.Unlock()
}

func (cc *clientConn) serve(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, pool string) {
	defer cc.sc.Close()
	go ssh.DiscardRequests(reqs) // keepalives answered; tcpip-forward (-R) refused
	// The session opens while channels arrive: a pool that has to get a
	// node first shows the wait on the first session channel.
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		<-cc.ready
		if cc.sess != nil {
			cc.sess.Close()
		}
	}()
	if cc.sc.Permissions.Extensions[extDisabled] != "" {
		// Tell the holder of a disabled user's credential why, on every
		// channel, then hang up.
		cc.refusal = "dspool: your account " + cc.user.Name + " is disabled: ask an admin to enable it"
		close(cc.ready)
		cc.g.log.Info("ssh login refused: the user is disabled", "user", cc.user.Name, "remote", cc.sc.RemoteAddr().String())
		t := time.AfterFunc(barredGrace, func() { cc.sc.Close() })
		defer t.Stop()
	} else {
		go cc.openSession(ctx, pool)
	}
	go cc.keepAlive()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session", "direct-tcpip":
			if !cc.take() {
				_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("dspool: at most %d channels per connection", MaxChannels))
				continue
			}
			go func() {
				defer cc.release()
				if nc.ChannelType() == "session" {
					cc.session(nc)
				} else {
					cc.forward(nc)
				}
			}()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "dspool offers session and direct-tcpip channels only")
		}
	}
}

// barredGrace is how long the connection of a disabled user's credential
// stays open to show why it opens nothing.
const barredGrace = 10 * time.Second

// openSession opens the connection's session and closes cc.ready.
func (cc *clientConn) openSession(ctx context.Context, pool string) {
	defer close(cc.ready)
	sess, err := cc.g.cfg.Backend.OpenSession(ctx, cc.user, pool, cc.sc.RemoteAddr().String(), cc.sc.Permissions.Extensions[extKey], cc.setProgress)
	if err != nil {
		cc.refusal = "dspool: " + dspool.Message(err)
		cc.g.log.Info("ssh session refused", "user", cc.user.Name, "err", err)
		return
	}
	cc.sess = sess
	go cc.watch()
	cc.g.log.Info("ssh login", "user", cc.user.Name, "session", sess.ID(), "node", sess.NodeName(),
		"remote", cc.sc.RemoteAddr().String(), "key", cc.sc.Permissions.Extensions[extKey])
}

func (cc *clientConn) setProgress(msg string) {
	cc.mu.Lock()
	cc.progress = msg
	cc.mu.Unlock()
}

// await waits until the session is open or refused, showing the wait for
// a node on w: a line that updates on a terminal, a line per change
// otherwise. It reports false when the connection ended first.
func (cc *clientConn) await(w io.Writer, tty bool) bool {
	select {
	case <-cc.ready:
		return true
	default:
	}
	began := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := ""
	for {
		cc.mu.Lock()
		msg := cc.progress
		cc.mu.Unlock()
		switch {
		case msg == "":
		case tty:
			_, _ = fmt.Fprintf(w, "\r\033[K%s, %d s", msg, int(time.Since(began).Seconds()))
		case msg != last:
			_, _ = fmt.Fprintf(w, "dspool: %s\n", msg)
		}
		if msg != "" {
			last = msg
		}
		select {
		case <-cc.ready:
			if tty && last != "" {
				_, _ = fmt.Fprint(w, "\r\033[K")
			}
			return true
		case <-cc.closed:
			return false
		case <-t.C:
		}
	}
}

// watch ends the connection when the session is ended from outside.
func (cc *clientConn) watch() {
	select {
	case <-cc.sess.Done():
	case <-cc.closed:
		return
	}
	msg := endMessage(cc.sess)
	cc.mu.Lock()
	cc.ended = msg
	chs := make([]*channel, 0, len(cc.channels))
	for ch := range cc.channels {
		chs = append(chs, ch)
	}
	cc.mu.Unlock()
	for _, ch := range chs {
		ch.abort(msg)
	}
	// Give the messages a moment to leave before the connection closes.
	time.Sleep(200 * time.Millisecond)
	cc.sc.Close()
}

// endMessage tells the user why their connection ends: only this
// connection (the key it used was removed), their session, or their
// session for good (they were disabled: no invitation to log in again).
func endMessage(sess Session) string {
	switch {
	case sess.CredentialGone():
		return fmt.Sprintf("\r\ndspool: this connection was closed: %s. Your other connections go on; log in with another key for a new one.\r\n", sess.Reason())
	case sess.UserDisabled():
		return fmt.Sprintf("\r\ndspool: your session on node %s has ended: %s. Files on the share are intact.\r\n",
			sess.NodeName(), sess.Reason())
	}
	return fmt.Sprintf("\r\ndspool: your session on node %s has ended: %s. Files on the share are intact; log in again for a new session.\r\n",
		sess.NodeName(), sess.Reason())
}

func (cc *clientConn) keepAlive() {
	t := time.NewTicker(cc.g.cfg.KeepAlive)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-cc.closed:
			return
		case <-t.C:
		}
		res := make(chan error, 1)
		go func() {
			_, _, err := cc.sc.SendRequest("keepalive@openssh.com", true, nil)
			res <- err
		}()
		select {
		case err := <-res:
			if err != nil {
				return // the connection is closed
			}
			missed = 0
		case <-time.After(cc.g.cfg.KeepAlive):
			if missed++; missed >= 3 {
				cc.g.log.Info("ssh client stopped answering", "user", cc.user.Name)
				cc.sc.Close()
				return
			}
		}
	}
}
