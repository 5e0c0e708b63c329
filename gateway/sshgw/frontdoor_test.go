package sshgw_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/gateway/sshgw"
	"golang.org/x/crypto/ssh"
)

// syncBuffer is a log destination that tests read while the gateway
// writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines counts the lines that contain substr.
func (s *syncBuffer) lines(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

// serveOwn serves a second gateway for f's pool, configured by cfg, on ln
// (a loopback listener when nil); it logs into the returned buffer.
func (f *fixture) serveOwn(t *testing.T, cfg sshgw.Config, ln net.Listener) (string, *syncBuffer) {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	cfg.HostKey, cfg.Backend = f.host, sshgw.ServerBackend(f.p.Server)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	gw := sshgw.New(cfg)
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		gw.Close()
		ln.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve after Close: %v, want nil", err)
		}
	})
	return ln.Addr().String(), logs
}

// dialFrom logs in to addr as login with auth, from the loopback address
// local.
func dialFrom(local, addr, login string, auth ssh.AuthMethod, banner *string) (*ssh.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: login, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	if banner != nil {
		cfg.BannerCallback = func(m string) error { *banner += m; return nil }
	}
	sc, chans, reqs, err := ssh.NewClientConn(c, addr, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// flakyListener fails its first n Accepts as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.n > 0
	l.n--
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutlivesTemporaryErrors: running out of file descriptors
// stops nothing: the gateway backs off, says so once, and serves.
func TestAcceptOutlivesTemporaryErrors(t *testing.T) {
	f := start(t, 46600, sshgw.Config{})
	_, key := f.user(t, "gwfd")
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, logs := f.serveOwn(t, sshgw.Config{}, &flakyListener{Listener: inner, n: 6})
	c, err := dialFrom("127.0.0.1", addr, "gwfd", ssh.PublicKeys(key), nil)
	if err != nil {
		t.Fatalf("a login after 6 failed accepts: %v", err)
	}
	c.Close()
	// 5+10+20+40+80+160 ms of backoff: under the second between warnings.
	if got := logs.lines("ssh accept failed"); got != 1 {
		t.Errorf("%d warnings of failed accepts, want 1", got)
	}
}

// holdPreauth opens n connections from local that never authenticate and
// returns how many the gateway kept (it sent its version line, not a
// close).
func holdPreauth(t *testing.T, local, addr string, n int) int {
	t.Helper()
	held := 0
	for range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && strings.HasPrefix(line, "SSH-2.0-dspool") {
			held++
		}
	}
	return held
}

// TestPreAuthSlotsShared: 20 addresses that take every unauthenticated
// slot do not lock out a login from a fresh address, and the refusals
// are warned of once, not one line each.
func TestPreAuthSlotsShared(t *testing.T) {
	f := start(t, 46700, sshgw.Config{})
	_, key := f.user(t, "gwfresh")
	addr, logs := f.serveOwn(t, sshgw.Config{MaxUnauthenticated: 40, MaxPerSource: 8}, nil)
	for i := range 20 {
		holdPreauth(t, fmt.Sprintf("127.0.0.%d", i+2), addr, 10)
	}
	c, err := dialFrom("127.0.0.30", addr, "gwfresh", ssh.PublicKeys(key), nil)
	if err != nil {
		t.Fatalf("a login from a fresh address while 20 hold every slot: %v", err)
	}
	c.Close()
	if got := logs.lines("ssh connection refused"); got != 1 {
		t.Errorf("%d warnings of refused connections, want 1 (at most one per 10 s)", got)
	}
	// The 20 sources hold the 40 slots about evenly: 2 each, or 3 for a
	// few and 1 for as many (evictions take from a largest holder, and
	// which one among equals is not fixed). Another fresh source gets its
	// fair share, 1, or 2 when it can take from a source holding 3, and
	// no more.
	if held := holdPreauth(t, "127.0.0.31", addr, 3); held < 1 || held > 2 {
		t.Errorf("a fresh source kept %d of 3 connections, want 1 or 2", held)
	}
}

// TestPasswordGuessingAtTheGateway: repeated wrong passwords close the
// door, for the right one too, and the client is told why and for how
// long; the refusals make an entry per reason in the audit log, not one
// each.
func TestPasswordGuessingAtTheGateway(t *testing.T) {
	f := start(t, 46800, sshgw.Config{PasswordAuth: true})
	f.user(t, "gwguess")
	if err := f.p.Admin.SetPassword(context.Background(), "gwguess", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	wait := regexp.MustCompile(`too many failed password logins for this user: try again in \d+s`)
	// Guess until the door closes, then give the right password at once:
	// it must find the door closed too. On a machine so slow that the
	// door opened in between, the right password logged in (and reset
	// the count): guess again.
	refusedRight := false
	for round := 0; round < 3 && !refusedRight; round++ {
		for i := 0; i < 10; i++ {
			var banner string
			if c, err := dialFrom("127.0.0.1", f.addr, "gwguess", ssh.Password("wrong"), &banner); err == nil {
				c.Close()
				t.Fatal("a wrong password logged in")
			}
			if wait.MatchString(banner) {
				break
			}
		}
		var banner string
		c, err := dialFrom("127.0.0.1", f.addr, "gwguess", ssh.Password("correct horse battery"), &banner)
		if err == nil {
			c.Close()
			t.Logf("round %d: the door opened before the right password came", round)
			continue
		}
		if !wait.MatchString(banner) {
			t.Fatalf("the right password at a closed door: %v; the client was told %q, want when to try again", err, banner)
		}
		refusedRight = true
	}
	if !refusedRight {
		t.Fatal("the right password was never refused after repeated wrong ones")
	}
	var refused []*dspool.AuditEntry
	f.p.Eventually(5*time.Second, func() bool {
		refused = nil
		// Entries come once each client has gone.
		for _, e := range logins(t, f, -1) {
			if e.Target == "user gwguess" && e.Outcome == dspool.AuditFailure {
				refused = append(refused, e)
			}
		}
		return len(refused) >= 2
	}, "the refusals in the audit log")
	// One for the wrong passwords, one for the checks refused at a
	// closed door.
	if len(refused) != 2 {
		t.Errorf("%d audit entries for the refusals of a minute, want 2:%s", len(refused), describe(refused))
	}
}

func describe(es []*dspool.AuditEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %s %s %s %s: %s", e.Action, e.Target, e.Remote, e.Outcome, e.Detail)
	}
	return b.String()
}
