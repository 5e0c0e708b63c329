package agentsim_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/agentsim"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/share"
)

func TestMain(m *testing.M) {
	agentsim.Child()
	os.Exit(m.Run())
}

// TestFleetRidesOutAnOutage: simulated agents in a child process join a
// real control plane; when their link is cut and nothing listens for a
// while, each reports the loss, the refused attempts and the 503s it was
// told to come back later with, and all connect again.
func TestFleetRidesOutAnOutage(t *testing.T) {
	const nodes = 3
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	if _, err := share.EnsureID(p.Share); err != nil {
		t.Fatal(err)
	}
	tok, err := p.Admin.JoinToken(ctx, dspool.DefaultPool)
	if err != nil {
		t.Fatal(err)
	}
	link := newLink(t, p.URL[len("http://"):])

	dir := t.TempDir()
	// A fleet run as another user must reach its directory.
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if filepath.Base(d) == "tmp" {
			break
		}
		_ = os.Chmod(d, 0o755)
	}
	fleetDir := filepath.Join(dir, "fleet")
	standIn, err := agentsim.StandInShare(fleetDir, p.Share)
	if err != nil {
		t.Fatal(err)
	}
	as, err := agentsim.Unprivileged()
	if err != nil {
		t.Skip(err)
	}
	rec := &recorder{}
	fleet, err := agentsim.Spawn(agentsim.Options{Nodes: nodes, Server: "http://" + link.addr, JoinToken: tok.Token, Pool: dspool.DefaultPool,
		Dir: fleetDir, Share: standIn}, as, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fleet.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	rec.wait(t, fleet, "every agent to connect", func(c counts) bool { return c.connected == nodes })
	p.WaitReady(dspool.DefaultPool, nodes)

	link.busy(2)
	link.down(t)
	rec.wait(t, fleet, "every agent to lose its connection and find nothing listening", func(c counts) bool {
		return c.lost == nodes && c.failed[agentsim.Refused] >= nodes
	})
	link.up(t)
	rec.wait(t, fleet, "every agent to connect again", func(c counts) bool { return c.connected == 2*nodes })

	c := rec.counts()
	if c.failed[agentsim.Busy] != 2 {
		t.Errorf("%d attempts answered 503 Retry-After, want the 2 the link answered so", c.failed[agentsim.Busy])
	}
	if n := c.failed[agentsim.Error] + c.failed[agentsim.Dropped]; n > 0 {
		t.Errorf("%d attempts failed otherwise, want none: %v", n, rec.errs())
	}
	if c.stopped > 0 {
		t.Errorf("%d agents stopped, want none: %v", c.stopped, rec.errs())
	}
}

// TestClassify sorts the errors an agent's failed attempt ends with.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want agentsim.Class
	}{
		{"503 at the address's limit", dspool.Errorf(dspool.EUnavailable, "too many connections"), agentsim.Busy},
		{"nothing listens", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, agentsim.Refused},
		{"closed before the answer", fmt.Errorf("read: %w", io.EOF), agentsim.Dropped},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, agentsim.Dropped},
		{"refused credential", dspool.Errorf(dspool.EUnauthorized, "unknown node"), agentsim.Error},
		{"other", errors.New("tls: bad certificate"), agentsim.Error},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := agentsim.Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

type counts struct {
	connected, lost, stopped int
	failed                   map[agentsim.Class]int
}

type recorder struct {
	mu     sync.Mutex
	events []agentsim.Event
}

func (r *recorder) add(ev agentsim.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) counts() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := counts{failed: map[agentsim.Class]int{}}
	for _, ev := range r.events {
		switch ev.Kind {
		case agentsim.Connected:
			c.connected++
		case agentsim.Lost:
			c.lost++
		case agentsim.Failed:
			c.failed[ev.Class]++
		case agentsim.Stopped:
			c.stopped++
		}
	}
	return c
}

func (r *recorder) errs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Err != "" {
			out = append(out, fmt.Sprintf("node %d %s %s: %s", ev.Node, ev.Kind, ev.Class, ev.Err))
		}
	}
	return out
}

func (r *recorder) wait(t *testing.T, p *agentsim.Process, what string, cond func(counts) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(r.counts()) {
		select {
		case <-p.Done():
			t.Fatalf("waiting for %s: %v", what, p.Err())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v; errors: %v", what, r.counts(), r.errs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// link forwards connections to the control plane; it can stop listening
// (attempts are refused), cut what it carries, and answer connections as a
// server past an address's limit does.
type link struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
	busyLeft     int
}

func newLink(t *testing.T, target string) *link {
	l := &link{target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	l.serve(ln)
	t.Cleanup(func() { l.down(t) })
	return l
}

func (l *link) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			busy := l.busyLeft > 0
			if busy {
				l.busyLeft--
			}
			l.mu.Unlock()
			if busy {
				go server.BusyAnswer(nil)(c)
				continue
			}
			go l.forward(c)
		}
	}()
}

func (l *link) forward(c net.Conn) {
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	l.conns = append(l.conns, c, s)
	l.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

// busy answers the next n connections 503 with Retry-After.
func (l *link) busy(n int) {
	l.mu.Lock()
	l.busyLeft = n
	l.mu.Unlock()
}

// down stops listening and cuts every connection.
func (l *link) down(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// up listens again, on the same address.
func (l *link) up(t *testing.T) {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.serve(ln)
}
