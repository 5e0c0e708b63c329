package sshgw_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/gateway/sshgw"
	"golang.org/x/crypto/ssh"
)

// stream is one channel's payload: what its client sends to `cat` on the
// node and must get back, and no one else.
type stream struct {
	name string // user/connection/channel
	sent []byte
	got  bytes.Buffer
	err  error
}

// TestConcurrentSessionsKeepTheirBytes: the gateway's SSH server recycles
// the buffers that packets are decrypted into (gateway/internal/ssh,
// pool.go) across all its connections, so a buffer recycled too early would
// hand one user's bytes to another. Users with connections of their own,
// each with several channels running `cat` at once, send random payloads in
// writes of random sizes, and every byte must come back, in order, to the
// channel that sent it.
func TestConcurrentSessionsKeepTheirBytes(t *testing.T) {
	t.Run("gateway in the control plane", func(t *testing.T) { concurrentSessions(t, 48700, false) })
	// dspool gateway: the node's connections come to the gateway itself.
	t.Run("gateway apart", func(t *testing.T) { concurrentSessions(t, 48750, true) })
}

func concurrentSessions(t *testing.T, uidBase int, apart bool) {
	const (
		users    = 6 // each a session of their own on the node
		conns    = 2 // per user, sharing the user's session
		channels = 2 // per connection
		size     = 3 << 20
	)
	// Client, gateway, agent and control plane share this process, and
	// under -race they can keep the agent's heartbeats waiting past the
	// usual test grace of 2 s, when the agent fences itself and ends its
	// sessions (decision 0017): a grace of 30 s keeps that out of this test.
	f := startGateway(t, dspooltest.Options{UIDBase: uidBase, NodeGrace: 30 * time.Second}, sshgw.Config{}, agent.Config{},
		dspool.SessionSpec{CPUs: 100, Memory: 64 << 20}, apart)
	var streams []*stream
	var clients []*ssh.Client
	for u := range users {
		name := fmt.Sprintf("gwiso%d", u)
		_, key := f.user(t, name)
		for c := range conns {
			// Both ciphers the gateway offers by default.
			cipher := sshgw.DefaultCiphers[(u+c)%len(sshgw.DefaultCiphers)]
			cl, err := ssh.Dial("tcp", f.addr, &ssh.ClientConfig{User: name, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Config: ssh.Config{Ciphers: []string{cipher}}})
			if err != nil {
				t.Fatalf("%s, connection %d: %v", name, c, err)
			}
			defer cl.Close()
			clients = append(clients, cl)
			for ch := range channels {
				s := &stream{name: fmt.Sprintf("%s/%d/%d", name, c, ch), sent: make([]byte, size/2+rand.IntN(size))}
				fill(s.sent)
				streams = append(streams, s)
			}
		}
	}
	// Every channel is open and its process started before any sends, so
	// that all of them carry data at once.
	sessions := make([]*ssh.Session, len(streams))
	for i, s := range streams {
		sess, err := clients[i/channels].NewSession()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		defer sess.Close()
		sess.Stdout = &s.got
		sessions[i] = sess
	}
	stdins := make([]io.WriteCloser, len(streams))
	for i, sess := range sessions {
		stdins[i], _ = sess.StdinPipe()
		if err := sess.Start("cat"); err != nil {
			t.Fatalf("%s: %v", streams[i].name, err)
		}
	}
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() {
			if s.err = writeRandomly(stdins[i], s.sent); s.err == nil {
				s.err = sessions[i].Wait()
			}
		})
	}
	wg.Wait()
	for _, s := range streams {
		switch {
		case s.err != nil:
			t.Errorf("%s: %v", s.name, s.err)
		case !bytes.Equal(s.got.Bytes(), s.sent):
			t.Errorf("%s: %s", s.name, difference(s, streams))
		}
	}
}

// fill fills b with random bytes.
func fill(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// writeRandomly writes b to w in writes of 1 byte to 100 KiB (more than
// one SSH packet), then closes w.
func writeRandomly(w io.WriteCloser, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), 1+rand.IntN(100<<10))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return w.Close()
}

// difference says where what s got first differs from what it sent, and
// whose bytes came instead, if they are another stream's.
func difference(s *stream, all []*stream) string {
	got := s.got.Bytes()
	off := 0
	for off < len(got) && off < len(s.sent) && got[off] == s.sent[off] {
		off++
	}
	msg := fmt.Sprintf("got %d bytes, sent %d; they differ from byte %d", len(got), len(s.sent), off)
	if off+32 <= len(got) {
		for _, o := range all {
			if at := bytes.Index(o.sent, got[off:off+32]); at >= 0 {
				msg += fmt.Sprintf(", where %s's bytes from its byte %d came", o.name, at)
			}
		}
	}
	return msg
}
