package e2e_test

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestGatewayApartOutlivesRestart: two `dspool gateway` processes behind a
// TCP load balancer present the pool's one host key; an SSH connection
// through them keeps working while the control plane is killed (kill -9)
// and after it is back, without reconnecting; the control plane takes the
// connection up again (the session lists it), and ending the session from
// the control plane still closes it at the gateway
// (docs/decisions/0019-ssh-gateway-apart.md).
func TestGatewayApartOutlivesRestart(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	listen := "127.0.0.1:" + freePort(t)
	cfg := upConfig{UIDBase: uidBase(73), Args: []string{"--node-grace", "20s", "--listen", listen, "--ssh-listen", "off"}}
	up := startUp(t, cfg)
	cfg.Data, cfg.Login = up.Data, up.Login
	tok := strings.TrimSpace(cliOK(t, up.env(), "token", "create", "--name", "gateway", "--scope", "gateway"))

	// A user's token cannot run a gateway.
	bob := up.sshUser(t, "e2egw73b")
	gwEnv := func(token string) []string {
		return []string{"DSPOOL_SERVER=" + up.URL, "DSPOOL_TOKEN=" + token, "DSPOOL_CA=" + up.CA,
			"DSPOOL_CONFIG=" + filepath.Join(tempDir(t), "none.json")}
	}
	_, errs, code := cli(t, gwEnv(bob.token), "gateway", "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "gateway") {
		t.Errorf("a gateway with an ordinary user's token: exit %d, stderr %q; want a refusal naming the gateway scope", code, errs)
	}

	port1, gw1 := startGateway(t, gwEnv(tok))
	port2, _ := startGateway(t, gwEnv(tok))
	ports := []string{port1, port2}
	keys := []string{hostKeyAt(t, ports[0]), hostKeyAt(t, ports[1])}
	if keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("the gateways' host keys: %q and %q, want the pool's one key at both", keys[0], keys[1])
	}
	bob.up.SSHPort = tcpBalancer(t, ports)

	// Logins through either gateway (the balancer takes turns).
	for i := range 2 {
		if out := bob.sshOK(t, "echo hello-$USER"); strings.TrimSpace(out) != "hello-e2egw73b" {
			t.Fatalf("login %d through the balancer printed %q", i, out)
		}
	}

	// Without a terminal, stdin on a data connection of its own: its end
	// reaches the process.
	if out, errs, code := bob.ssh(t, bob.Name, strings.NewReader("abc\n"), "wc -c"); strings.TrimSpace(out) != "4" || code != 0 {
		t.Fatalf("stdin through the gateway: wc -c printed %q (exit %d, stderr %q), want 4", out, code, errs)
	}
	// A terminal: its bytes travel in frames on the node's connection.
	out, errs, code := bob.ssh(t, bob.Name, strings.NewReader("tty; exit 5\n"), "-tt")
	if code != 5 || !strings.Contains(out, "/dev/pts/") {
		t.Fatalf("a terminal through the gateway: exit %d, output %q, stderr %q; want a pts and exit 5", code, out, errs)
	}
	// A port forward, to a listener on the node (this machine).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "forwarded-ok\n")
			c.Close()
		}
	}()
	sc := bob.dial(t)
	fc, err := sc.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("a forward through the gateway: %v", err)
	}
	if b, _ := io.ReadAll(fc); string(b) != "forwarded-ok\n" {
		t.Errorf("through the forward: %q", b)
	}
	fc.Close()
	sc.Close()

	// A connection that echoes its stdin back, with the data path
	// straight from the node to its gateway.
	cmd := exec.Command("ssh", append(bob.sshOpts(bob.up.SSHPort), bob.Name+"@127.0.0.1",
		`echo $DSPOOL_SESSION; while read l; do echo "got $l"; done`)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s: the SSH connection ended (stderr %q)", what, errb.String())
			}
			return l
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: nothing in 20 s (stderr %q)", what, errb.String())
		}
		return ""
	}
	echo := func(word string) {
		t.Helper()
		if _, err := io.WriteString(stdin, word+"\n"); err != nil {
			t.Fatalf("write %s: %v", word, err)
		}
		if got := next("echo " + word); got != "got "+word {
			t.Fatalf("the connection echoed %q, want %q", got, "got "+word)
		}
	}
	session := next("the session's id")
	if !strings.HasPrefix(session, "s-") {
		t.Fatalf("the connection printed %q first, want its session's id", session)
	}
	echo("before")

	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	echo("while-the-control-plane-is-down")
	up2 := startUp(t, cfg)
	echo("after-the-restart")

	// The control plane took the connection up: the session lists it.
	eventually(t, 30*time.Second, "the session to count the gateway's connection again", func() bool {
		var ss []*dspool.Session
		cliJSON(t, up2.userEnv(bob.token), &ss, "session", "list")
		return len(ss) == 1 && ss[0].ID == session && ss[0].Connections == 1
	})
	echo("taken-up")

	// Ended from the control plane, the connection closes at its gateway.
	cliOK(t, up2.env(), "session", "kill", session)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the connection did not end within 20 s of session kill (stderr %q)", errb.String())
	}
	if !strings.Contains(errb.String(), "session") {
		t.Errorf("the ended connection told its user %q, want why", errb.String())
	}

	// A gateway stopped on purpose tells the control plane of the
	// connections it closed: their session ends now, not after the grace.
	bob.up.SSHPort = port1
	_, s2, _ := bob.sshLongRunning(t, "echo $DSPOOL_SESSION; sleep 600")
	if !strings.HasPrefix(s2, "s-") {
		t.Fatalf("a connection through gateway 1 printed %q, want its session's id", s2)
	}
	if err := gw1.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the session of the stopped gateway's connection to end", func() bool {
		var ss []*dspool.Session
		cliJSON(t, up2.userEnv(bob.token), &ss, "session", "list")
		return len(ss) == 0
	})
}

// startGateway starts `dspool gateway` with env and returns its SSH port
// once it listens.
func startGateway(t *testing.T, env []string) (string, *exec.Cmd) {
	t.Helper()
	port := freePort(t)
	dir := tempDir(t)
	out, errf := filepath.Join(dir, "gateway.out"), filepath.Join(dir, "gateway.err")
	cmd := startProc(t, env, out, errf, "gateway", "--listen", "127.0.0.1:"+port, "--agent-listen", "127.0.0.1:0")
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(errf)
			t.Logf("gateway log:\n%s", b)
		}
	})
	eventually(t, 20*time.Second, "the gateway to listen", func() bool {
		b, _ := os.ReadFile(errf)
		return strings.Contains(string(b), "ssh gateway listening")
	})
	return port, cmd
}

// hostKeyAt is the host key the SSH server on port presents.
func hostKeyAt(t *testing.T, port string) string {
	t.Helper()
	out, err := exec.Command("ssh-keyscan", "-p", port, "-t", "ed25519", "127.0.0.1").Output()
	if err != nil {
		t.Fatalf("ssh-keyscan -p %s: %v", port, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return ""
	}
	return f[1] + " " + f[2]
}

// tcpBalancer forwards each connection to the next of ports in turn, as a
// TCP load balancer does; it returns its port.
func tcpBalancer(t *testing.T, ports []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go forward(ln, func() string { return "127.0.0.1:" + ports[int(n.Add(1))%len(ports)] })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// forward accepts connections on ln until it is closed, and joins each to
// a connection to the address pick gives ("": none, and it is closed).
func forward(ln net.Listener, pick func() string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		to := pick()
		go func() {
			defer c.Close()
			if to == "" {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			defer b.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
			<-done
		}()
	}
}
