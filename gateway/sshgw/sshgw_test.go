package sshgw_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/gateway/sshgw"
	"golang.org/x/crypto/ssh"
)

type fixture struct {
	p    *dspooltest.Pool
	addr string
	gw   *sshgw.Gateway
	host *sshgw.HostKey
}

// start runs an in-process pool with one interactive node (1 cpu; a
// session reserves all of it) and a gateway in front of it.
func start(t testing.TB, uidBase int, cfg sshgw.Config) *fixture {
	t.Helper()
	return startWith(t, uidBase, cfg, agent.Config{})
}

// bothGateways runs test with the gateway in the control plane and apart
// from it (`dspool gateway`), each on users of its own uid range.
func bothGateways(t *testing.T, uidBase int, test func(t *testing.T, f func(sshgw.Config) *fixture)) {
	for _, apart := range []bool{false, true} {
		name, base := "gateway in the control plane", uidBase
		if apart {
			name, base = "gateway apart", uidBase+25
		}
		t.Run(name, func(t *testing.T) {
			test(t, func(cfg sshgw.Config) *fixture {
				return startGateway(t, dspooltest.Options{UIDBase: base}, cfg, agent.Config{}, dspool.SessionSpec{CPUs: 1000, Memory: 256 << 20}, apart)
			})
		})
	}
}

// startWith is start with the agent's configuration.
func startWith(t testing.TB, uidBase int, cfg sshgw.Config, ac agent.Config) *fixture {
	t.Helper()
	return startSessions(t, dspooltest.Options{UIDBase: uidBase}, cfg, ac, dspool.SessionSpec{CPUs: 1000, Memory: 256 << 20})
}

// startSessions is startWith with the pool's options and what a session
// reserves of the node's 1 cpu and 1 GiB.
func startSessions(t testing.TB, opts dspooltest.Options, cfg sshgw.Config, ac agent.Config, sessions dspool.SessionSpec) *fixture {
	t.Helper()
	return startGateway(t, opts, cfg, ac, sessions, false)
}

// startGateway is startSessions with the gateway in the control plane, or
// apart from it: the Remote backend of `dspool gateway`, which calls the
// control plane's API and takes the node's connections itself.
func startGateway(t testing.TB, opts dspooltest.Options, cfg sshgw.Config, ac agent.Config, sessions dspool.SessionSpec, apart bool) *fixture {
	t.Helper()
	p := dspooltest.New(t, opts)
	ctx := context.Background()
	sessions.Default = true
	pool := &dspool.Pool{Name: "inter", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30},
		Sessions: &sessions}
	if _, err := p.Admin.ApplyPools(ctx, []*dspool.Pool{pool}); err != nil {
		t.Fatal(err)
	}
	ac.Name, ac.CPUs, ac.Memory = "inter-1", 1000, 1<<30
	p.AddAgent("inter", ac)
	p.WaitReady("inter", 1)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	host, err := sshgw.NewHostKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HostKey, cfg.Backend = host, sshgw.ServerBackend(p.Server)
	if apart {
		aln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r, err := sshgw.NewRemote(sshgw.RemoteConfig{Client: p.Admin, Listener: aln, Advertise: aln.Addr().String(), Heartbeat: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		cfg.Backend = r
	}
	gw := sshgw.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); gw.Close() })
	return &fixture{p: p, addr: ln.Addr().String(), gw: gw, host: host}
}

// user creates a dspool user with a registered key, returning the key.
func (f *fixture) user(t testing.TB, name string) (*dspool.User, ssh.Signer) {
	t.Helper()
	ctx := context.Background()
	u, err := f.p.Admin.CreateUser(ctx, api.UserCreate{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	if _, err := f.p.Admin.AddKey(ctx, name, string(ssh.MarshalAuthorizedKey(signer.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	return u, signer
}

func (f *fixture) dial(login string, key ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", f.addr, &ssh.ClientConfig{User: login, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

func run(t *testing.T, c *ssh.Client, cmd string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb strings.Builder
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	return out.String(), errb.String(), err
}

// sleeping starts a command that says it started and then sleeps, and
// returns its session once it has said so, with its stderr.
func sleeping(t *testing.T, c *ssh.Client) (*ssh.Session, *strings.Builder) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	errb := &strings.Builder{}
	s.Stderr = errb
	stdout, _ := s.StdoutPipe()
	if err := s.Start("echo started; exec sleep 60"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "started\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	return s, errb
}

func runsAs(u *dspool.User) int {
	if os.Geteuid() == 0 {
		return u.UID
	}
	return os.Geteuid()
}

// TestSessionsShareNodesWithJobs: a session holds its reservation, so a job
// that needs the same cpu waits until the session ends; a second user finds
// the pool full and is told so on their terminal.
func TestSessionsShareNodesWithJobs(t *testing.T) {
	bothGateways(t, 46000, func(t *testing.T, start func(sshgw.Config) *fixture) { sessionsShareNodes(t, start(sshgw.Config{})) })
}

func sessionsShareNodes(t *testing.T, f *fixture) {
	ada, adaKey := f.user(t, "gwada")
	_, bobKey := f.user(t, "gwbob")
	c, err := f.dial("gwada", adaKey)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, c, "id -u; echo $DSPOOL_NODE")
	if err != nil || out != strconv.Itoa(runsAs(ada))+"\ninter-1\n" {
		t.Fatalf("ada's command: %q, %v", out, err)
	}
	// A second connection of ada joins her session (one reservation).
	c2, err := f.dial("gwada+inter", adaKey)
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := run(t, c2, "echo $DSPOOL_SESSION"); err != nil || !strings.HasPrefix(out, "s-") {
		t.Fatalf("second connection: %q, %v", out, err)
	}
	ctx := context.Background()
	list, err := f.p.Admin.Sessions(ctx, true, false)
	if err != nil || len(list) != 1 || list[0].Connections != 2 || list[0].CPUs != 1000 {
		t.Fatalf("sessions: %+v, %v; want one session with two connections", list, err)
	}
	if nodes, err := f.p.Admin.Nodes(ctx, "inter"); err != nil || len(nodes) != 1 || nodes[0].Allocated.CPUs != 1000 || nodes[0].Allocated.Memory != 256<<20 {
		t.Fatalf("the node's allocation: %+v, %v; want the session's reservation", nodes, err)
	}

	bc, err := f.dial("gwbob", bobKey)
	if err != nil {
		t.Fatal(err)
	}
	_, errs, err := run(t, bc, "true")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 255 || !strings.Contains(errs, "is full") {
		t.Fatalf("bob on a full pool: %v, stderr %q; want exit 255 and a message", err, errs)
	}
	bc.Close()

	j, err := f.p.Admin.SubmitJob(ctx, &dspool.JobSpec{Pool: "inter", CPUs: 1000, Command: []string{"true"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := f.p.Admin.WaitJob(ctx, j.ID, 2*time.Second); err != nil || cur.State != dspool.JobQueued {
		t.Fatalf("job while the session holds the node: %v, %v; want queued", cur.State, err)
	}
	c.Close()
	c2.Close()
	if done := f.p.Wait(f.p.Admin, j.ID); done.State != dspool.JobSucceeded {
		t.Fatalf("job after the session ended: %s", done.State)
	}
	ended, err := f.p.Admin.Sessions(ctx, true, true)
	if err != nil || len(ended) != 1 || ended[0].State != dspool.SessionEnded || ended[0].EndReason != "the user logged out" || ended[0].BytesOut == 0 {
		t.Fatalf("ended sessions: %+v, %v", ended, err)
	}
}

// TestForwardAndKill: ssh -L reaches a port on the node; killing the
// session from the API ends the client's command with a message.
func TestForwardAndKill(t *testing.T) {
	bothGateways(t, 46100, func(t *testing.T, start func(sshgw.Config) *fixture) { forwardAndKill(t, start(sshgw.Config{})) })
}

func forwardAndKill(t *testing.T, f *fixture) {
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			conn, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); conn.Close() }()
		}
	}()
	conn, err := c.Dial("tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("through the node ", 10000)
	go func() { _, _ = io.WriteString(conn, msg); conn.(interface{ CloseWrite() error }).CloseWrite() }()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != msg {
		t.Fatalf("echo through the forward: %d bytes, %v; want %d", len(got), err, len(msg))
	}
	conn.Close()

	s, errb := sleeping(t, c)
	list, err := f.p.Admin.Sessions(context.Background(), true, false)
	if err != nil || len(list) != 1 {
		t.Fatalf("sessions: %+v, %v", list, err)
	}
	if _, err := f.p.Admin.KillSession(context.Background(), list[0].ID); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() { werr <- s.Wait() }()
	select {
	case err := <-werr:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 255 || !strings.Contains(errb.String(), "has ended") {
			t.Fatalf("killed session: %v, stderr %q", err, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command outlived its killed session by 10s")
	}
}

// TestPreAuthLimits: connections that never authenticate are bounded per
// source and dropped at the handshake timeout.
func TestPreAuthLimits(t *testing.T) {
	f := start(t, 46200, sshgw.Config{MaxPerSource: 2, HandshakeTimeout: 500 * time.Millisecond})
	var idle []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// Both slots are taken: the next connection is closed at once.
	extra, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := io.ReadAll(extra); err != nil {
		t.Fatalf("a third unauthenticated connection from one source: %v; want it closed at once", err)
	}
	// The idle ones are dropped at the handshake timeout (after the server
	// sent its version line).
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || !strings.HasPrefix(string(b), "SSH-2.0-dspool") {
			t.Fatalf("idle connection: read %q, %v; want the version line, then a close", b, err)
		}
	}
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatalf("a real login after the idle connections were dropped: %v", err)
	}
	c.Close()
}

// BenchmarkThroughput sends b.N MiB through the gateway into `cat
// >/dev/null` on the node. bench/ssh compares the real binary with OpenSSH;
// this one is for profiling the path in one process.
func BenchmarkThroughput(b *testing.B) {
	f := start(b, 46300, sshgw.Config{})
	_, key := f.user(b, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	in, _ := s.StdinPipe()
	if err := s.Start("cat >/dev/null"); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := in.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	in.Close()
	if err := s.Wait(); err != nil {
		b.Fatal(err)
	}
}

// TestPasswordLogin: password logins are refused unless the gateway allows
// them, and then only with the user's own password.
func TestPasswordLogin(t *testing.T) {
	f := start(t, 46400, sshgw.Config{PasswordAuth: true})
	ada, _ := f.user(t, "gwada")
	ctx := context.Background()
	if err := f.p.Admin.SetPassword(ctx, "gwada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	dial := func(addr, login, pw string) (*ssh.Client, error) {
		return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: login, Auth: []ssh.AuthMethod{ssh.Password(pw)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	}
	c, err := dial(f.addr, "gwada", "correct horse battery")
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	out, _, err := run(t, c, "id -u")
	c.Close()
	if err != nil || out != strconv.Itoa(runsAs(ada))+"\n" {
		t.Fatalf("session: %q, %v", out, err)
	}
	for _, bad := range [][2]string{{"gwada", "wrong horse battery"}, {"nobody", "correct horse battery"}, {"admin46400", "correct horse battery"}} {
		if c, err := dial(f.addr, bad[0], bad[1]); err == nil {
			c.Close()
			t.Errorf("login %s with password %q succeeded", bad[0], bad[1])
		}
	}
	// The same user and password at a gateway that takes keys only.
	keysOnly := sshgw.New(sshgw.Config{HostKey: f.host, Backend: sshgw.ServerBackend(f.p.Server)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { _ = keysOnly.Serve(ln) }()
	defer keysOnly.Close()
	if c, err := dial(ln.Addr().String(), "gwada", "correct horse battery"); err == nil || !strings.Contains(err.Error(), "no supported methods remain") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("password at a keys-only gateway: %v", err)
	}
}

// TestSilentPartition: when a node's connection goes silent (no reset, no
// answers), its sessions end with a message within the node grace period.
func TestSilentPartition(t *testing.T) {
	f := start(t, 46500, sshgw.Config{})
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, errb := sleeping(t, c)
	f.p.Agents()[0].Link.Stall()
	began := time.Now()
	werr := make(chan error, 1)
	go func() { werr <- s.Wait() }()
	select {
	case err := <-werr:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 255 || !strings.Contains(errb.String(), "inter-1") {
			t.Fatalf("session over a silent link: %v, stderr %q", err, errb.String())
		}
		t.Logf("ended %v after the link went silent", time.Since(began).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("the session outlived a silent link by 15s")
	}
}

// TestChannelLimit: one connection holds at most MaxChannels channels.
func TestChannelLimit(t *testing.T) {
	f := start(t, 46600, sshgw.Config{})
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var open []*ssh.Session
	for i := 0; i < sshgw.MaxChannels; i++ {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("channel %d: %v", i+1, err)
		}
		open = append(open, s)
	}
	if _, err := c.NewSession(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("channel %d: %v; want a refusal", sshgw.MaxChannels+1, err)
	}
	open[0].Close()
	// The slot is given back once the channel is closed on both sides.
	var s *ssh.Session
	f.p.Eventually(5*time.Second, func() bool {
		s, err = c.NewSession()
		return err == nil
	}, "a channel slot to free up")
	if out, err := s.Output("echo ok"); err != nil || string(out) != "ok\n" {
		t.Fatalf("after a slot freed up: %q, %v", out, err)
	}
}

// TestFramedSessions: with the agent's one connection only, stdin and stdout
// travel in frames, with the same results.
func TestFramedSessions(t *testing.T) {
	f := startWith(t, 46700, sshgw.Config{}, agent.Config{FramedSessions: true})
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("0123456789abcdef", 200000) // 3.2 MB through stdin and back
	s.Stdin = strings.NewReader(data)
	var errb strings.Builder
	s.Stderr = &errb
	out, err := s.Output("cat; echo done >&2; exit 4")
	var ee *ssh.ExitError
	if string(out) != data || !errors.As(err, &ee) || ee.ExitStatus() != 4 || errb.String() != "done\n" {
		t.Fatalf("framed: %d bytes back of %d, err %v, stderr %q", len(out), len(data), err, errb.String())
	}
	if out, _, err := run(t, c, "readlink /proc/self/fd/0"); err != nil || !strings.HasPrefix(out, "pipe:") {
		t.Fatalf("framed stdin: %q, %v; want a pipe", out, err)
	}
}

// TestBulkBothWays: a large stdin comes back whole on stdout, in order, and
// stdout is complete before the exit status.
func TestBulkBothWays(t *testing.T) {
	bothGateways(t, 46800, func(t *testing.T, start func(sshgw.Config) *fixture) { bulkBothWays(t, start(sshgw.Config{})) })
}

func bulkBothWays(t *testing.T, f *fixture) {
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		data := strings.Repeat(strconv.Itoa(i)+"abcdefghijklmnopqrstuvwxyz", 400000) // about 11 MB
		s.Stdin = strings.NewReader(data)
		out, err := s.Output("cat")
		if err != nil || string(out) != data {
			t.Fatalf("round %d: %d bytes back of %d, %v", i, len(out), len(data), err)
		}
	}
}

// TestStdinFromTheDataSocket: without a terminal, the process reads its
// stdin from the data connection itself, and writes stdout to a pipe that
// the agent splices to it; bytes the client sends before the process starts
// are not lost (the agent reads the control plane's answer a byte at a time).
//
// The gateway apart from the control plane gets its data connections over
// TLS (decision 0019), which the process cannot read itself: there stdin
// is a pipe, as over a TLS agent link.
func TestStdinFromTheDataSocket(t *testing.T) {
	f := start(t, 48500, sshgw.Config{})
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, _, err := run(t, c, "readlink /proc/self/fd/0 /proc/self/fd/1")
	if err != nil || !regexp.MustCompile(`^socket:\[\d+\]\npipe:\[\d+\]\n$`).MatchString(out) {
		t.Fatalf("stdin and stdout of a command: %q, %v; want a socket and a pipe", out, err)
	}
	for i := range 20 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		// Sent at once, with the request, before the process exists.
		data := fmt.Sprintf("line %d\n", i)
		s.Stdin = strings.NewReader(data)
		got, err := s.Output("sleep 0.05; cat")
		if err != nil || string(got) != data {
			t.Fatalf("round %d: %q, %v; want %q", i, got, err, data)
		}
	}
}
