package e2e_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/crypto/ssh"
)

// sshUser is a dspool user with an SSH key registered through the CLI.
type sshUser struct {
	*dspool.User
	token string
	key   string // private key file
	up    *upProc
}

func (u *upProc) sshUser(t *testing.T, name string) *sshUser {
	t.Helper()
	usr, token := u.createUser(t, name)
	key := filepath.Join(tempDir(t), name+"_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@e2e", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	var k dspool.SSHKey
	cliJSON(t, u.userEnv(token), &k, "key", "add", key+".pub")
	if k.User != name || !strings.HasPrefix(k.Fingerprint, "SHA256:") {
		t.Fatalf("key add: %+v", k)
	}
	return &sshUser{User: usr, token: token, key: key, up: u}
}

// sshOpts are the options of every OpenSSH client run: the test's key, no
// known_hosts (the gateway's key is new in each test), no user config.
func (s *sshUser) sshOpts(port string, extra ...string) []string {
	return append([]string{"-F", "/dev/null", "-i", s.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-p", port}, extra...)
}

// ssh runs the real ssh client as login@gateway with args; it returns
// stdout, stderr and the exit status.
func (s *sshUser) ssh(t *testing.T, login string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	a := append(s.sshOpts(s.up.SSHPort), login+"@127.0.0.1")
	cmd := exec.Command("ssh", append(a, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("ssh %s %q did not finish in 60s; stderr %q", login, args, errb.String())
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func (s *sshUser) sshOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := s.ssh(t, s.Name, nil, args...)
	if code != 0 {
		t.Fatalf("ssh %s %q: exit %d, stderr %q", s.Name, args, code, errs)
	}
	return out
}

// sshLongRunning starts the real ssh running command, waits for its first
// line of output and returns it, with the running client and its stderr.
// The client is killed when the test ends.
func (s *sshUser) sshLongRunning(t *testing.T, command string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	cmd := exec.Command("ssh", append(s.sshOpts(s.up.SSHPort), s.Name+"@127.0.0.1", command)...)
	stdout, _ := cmd.StdoutPipe()
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	return cmd, strings.TrimSpace(line), errb
}

// syncBuffer is a buffer a running command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// dial logs in with Go's SSH client, for what OpenSSH's cannot script.
func (s *sshUser) dial(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", "127.0.0.1:"+s.up.SSHPort, &ssh.ClientConfig{User: s.Name,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(loadSigner(t, s.key))}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("ssh as %s: %v", s.Name, err)
	}
	return c
}

func requireSSHClients(t *testing.T) {
	t.Helper()
	for _, c := range []string{"ssh", "scp", "sftp", "rsync", "ssh-keygen"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs OpenSSH's client tools and rsync (apt-get install openssh-client rsync): %s not found", c)
		}
	}
}

func TestSSHGateway(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	up := startUp(t, upConfig{UIDBase: uidBase(12), Nodes: 2})
	ada := up.sshUser(t, "e2essh12a")
	bob := up.sshUser(t, "e2essh12b")
	_, carl := up.createUser(t, "e2essh12c")

	t.Run("login lands as the user with the home on the share", func(t *testing.T) {
		out := ada.sshOK(t, "id -u; echo $HOME; pwd; readlink ~/notebooks/remote; stat -c %a ~")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		home := filepath.Join(up.Share, "home", ada.Name)
		want := []string{strconv.Itoa(ada.UID), home, home, filepath.Join(up.Share, "notebooks", ada.Name), "700"}
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q, want %q", lines, want)
		}
	})

	t.Run("exit status and stderr pass through", func(t *testing.T) {
		out, errs, code := ada.ssh(t, ada.Name, nil, "echo out; echo err >&2; exit 3")
		if out != "out\n" || errs != "err\n" || code != 3 {
			t.Fatalf("stdout %q, stderr %q, exit %d; want out, err, 3", out, errs, code)
		}
		out, _, code = ada.ssh(t, ada.Name, strings.NewReader("line one\nline two\n"), "wc -l")
		if strings.TrimSpace(out) != "2" || code != 0 {
			t.Fatalf("stdin: wc -l printed %q (exit %d), want 2", out, code)
		}
	})

	t.Run("a terminal and a login shell", func(t *testing.T) {
		out, errs, code := ada.ssh(t, ada.Name, strings.NewReader("tty; stty size; echo $TERM; shopt -q login_shell && echo login; exit 5\n"),
			"-tt", "-o", "SetEnv=TERM=xterm-256color")
		if code != 5 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "login") {
			t.Fatalf("exit %d, output %q, stderr %q; want a pts, a login shell, exit 5", code, out, errs)
		}
	})

	t.Run("window changes and signals pass through", func(t *testing.T) {
		c := ada.dial(t)
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
			t.Fatal(err)
		}
		in, _ := s.StdinPipe()
		out, _ := s.StdoutPipe()
		if err := s.Start("stty size; while read x; do stty size; done"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		expect := func(want string) {
			t.Helper()
			for {
				line, err := r.ReadString('\n')
				if strings.TrimSpace(line) == want {
					return
				}
				if err != nil {
					t.Fatalf("no %q in the output: %v", want, err)
				}
			}
		}
		expect("24 80")
		if err := s.WindowChange(50, 132); err != nil {
			t.Fatal(err)
		}
		// The window change goes on the session's control stream and the
		// newline on its data connection: the shell may read the newline
		// first. Each newline prints the size the terminal has then.
		lines := make(chan string, 64)
		go func() {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					close(lines)
					return
				}
				lines <- strings.TrimSpace(line)
			}
		}()
		// The terminal echoes each newline at once, before the shell's
		// answer: empty lines are not answers.
		resized := false
		var seen []string
		for try := 0; try < 50 && !resized; try++ {
			_, _ = in.Write([]byte("\n"))
			for answered := false; !answered; {
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatal("the session ended before the window change showed")
					}
					seen = append(seen, line)
					answered = line != ""
					resized = line == "50 132"
				case <-time.After(5 * time.Second):
					t.Fatalf("no answer to a newline in 5 s (lines %q)", seen)
				}
			}
		}
		if !resized {
			t.Fatalf("the window change never reached the terminal: the lines after it were %q", seen)
		}
		if err := s.Signal(ssh.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var ee *ssh.ExitError
		if err := s.Wait(); !errors.As(err, &ee) || ee.Signal() != "TERM" {
			t.Fatalf("after SIGTERM: %v; want an exit by signal TERM", err)
		}
	})

	t.Run("a file written on one node is read on another", func(t *testing.T) {
		node1 := strings.TrimSpace(ada.sshOK(t, "echo written-on-$DSPOOL_NODE > shared.txt; echo $DSPOOL_NODE"))
		// Occupy that node with a job holding its only cpu: the next
		// session has room on the other node only.
		env := up.userEnv(carl)
		id := submit(t, env, "--name", "hold", "--cpus", "1", "--", "sleep", "120")
		t.Cleanup(func() { _, _, _ = cli(t, env, "job", "cancel", itoa(id)) })
		j := waitState(t, env, id, dspool.JobRunning, 30*time.Second)
		nodes := up.waitNodes(t, "", 2)
		var held string
		for _, n := range nodes {
			if n.ID == j.Node {
				held = n.Name
			}
		}
		// Both nodes were free, and sessions and jobs break ties the same
		// way (by node id), so the job took the node the session had.
		if held != node1 {
			t.Fatalf("the job went to %s, the first session ran on %s", held, node1)
		}
		out := strings.TrimSpace(ada.sshOK(t, "echo $DSPOOL_NODE; cat shared.txt"))
		lines := strings.Split(out, "\n")
		if len(lines) != 2 || lines[0] == held || lines[0] == "" || lines[1] != "written-on-"+node1 {
			t.Fatalf("second session printed %q; want a node other than %s (held by a job), reading written-on-%s", lines, held, node1)
		}
		cliOK(t, env, "job", "cancel", itoa(id))
		waitState(t, env, id, dspool.JobCancelled, 30*time.Second)
	})

	t.Run("users cannot read each other's home", func(t *testing.T) {
		ada.sshOK(t, "echo secret > private.txt")
		home := filepath.Join(up.Share, "home", ada.Name)
		out, _, code := bob.ssh(t, bob.Name, nil, "cat "+home+"/private.txt; ls "+home)
		if code == 0 || strings.Contains(out, "secret") {
			t.Fatalf("bob read ada's home: exit %d, output %q", code, out)
		}
	})

	t.Run("scp, sftp and rsync", func(t *testing.T) {
		dir := tempDir(t)
		src := filepath.Join(dir, "data.bin")
		data := make([]byte, 3<<20)
		_, _ = rand.Read(data)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		opts := func(portFlag string) []string {
			o := ada.sshOpts(up.SSHPort)
			for i := range o {
				if o[i] == "-p" {
					o[i] = portFlag
				}
			}
			return o
		}
		run := func(name string, args ...string) {
			t.Helper()
			cmd := exec.Command(name, args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %q: %v\n%s", name, args, err, out)
			}
		}
		run("scp", append(opts("-P"), src, ada.Name+"@127.0.0.1:via-scp.bin")...)
		run("scp", append(append(opts("-P"), "-O"), src, ada.Name+"@127.0.0.1:via-scp-legacy.bin")...)
		batch := filepath.Join(dir, "batch")
		_ = os.WriteFile(batch, []byte("put data.bin via-sftp.bin\nget via-scp.bin back.bin\n"), 0o644)
		run("sftp", append(append(opts("-P"), "-b", batch), ada.Name+"@127.0.0.1")...)
		run("rsync", "-a", "-e", "ssh "+strings.Join(ada.sshOpts(up.SSHPort), " "), src, ada.Name+"@127.0.0.1:via-rsync.bin")
		want := sha256.Sum256(data)
		for _, f := range []string{filepath.Join(dir, "back.bin"), "via-scp.bin", "via-scp-legacy.bin", "via-sftp.bin", "via-rsync.bin"} {
			if !filepath.IsAbs(f) {
				f = filepath.Join(up.Share, "home", ada.Name, f)
			}
			b, err := os.ReadFile(f)
			if err != nil || sha256.Sum256(b) != want {
				t.Errorf("%s: %v, %d bytes; want the %d bytes sent", f, err, len(b), len(data))
			}
			if st, err := os.Stat(f); err == nil && strings.HasPrefix(f, up.Share) && st.Sys().(*syscall.Stat_t).Uid != uint32(ada.UID) {
				t.Errorf("%s is owned by uid %d, want %d", f, st.Sys().(*syscall.Stat_t).Uid, ada.UID)
			}
		}
	})

	t.Run("local port forwarding carries an HTTP request", func(t *testing.T) {
		port := freePort(t)
		serve := exec.Command("ssh", append(ada.sshOpts(up.SSHPort), ada.Name+"@127.0.0.1",
			"mkdir -p www && echo forwarded-ok > www/index.html && exec python3 -m http.server "+port+" --bind 127.0.0.1 --directory www")...)
		if err := serve.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
		local := freePort(t)
		fwd := exec.Command("ssh", append(ada.sshOpts(up.SSHPort, "-N", "-L", local+":localhost:"+port), ada.Name+"@127.0.0.1")...)
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = fwd.Process.Kill(); _ = fwd.Wait() }()
		var body string
		eventually(t, 30*time.Second, "an answer through ssh -L", func() bool {
			resp, err := http.Get("http://127.0.0.1:" + local + "/")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			return resp.StatusCode == 200
		})
		if body != "forwarded-ok\n" {
			t.Fatalf("through the forward: %q", body)
		}
		// Forwarding beyond the node is refused by default, saying why (the
		// address is checked before any connection is tried).
		c := ada.dial(t)
		defer c.Close()
		if conn, err := c.Dial("tcp", "192.0.2.1:80"); err == nil || !strings.Contains(err.Error(), "not allowed") {
			if conn != nil {
				conn.Close()
			}
			t.Fatalf("forward to 192.0.2.1:80: %v; want a refusal saying it is not allowed", err)
		}
	})

	t.Run("keepalives are answered and agent forwarding is off", func(t *testing.T) {
		// With one unanswered keepalive allowed a second apart, ssh would
		// give up during the sleep if the gateway did not answer them.
		out, errs, code := ada.ssh(t, ada.Name, nil, "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=1", "sleep 3; echo alive")
		if code != 0 || out != "alive\n" {
			t.Fatalf("with keepalives: exit %d, out %q, stderr %q", code, out, errs)
		}
		sock := filepath.Join(tempDir(t), "agent.sock")
		agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
		if err := agentCmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = agentCmd.Process.Kill(); _ = agentCmd.Wait() }()
		eventually(t, 10*time.Second, "ssh-agent to listen", func() bool { _, err := os.Stat(sock); return err == nil })
		cmd := exec.Command("ssh", append(ada.sshOpts(up.SSHPort, "-A"), ada.Name+"@127.0.0.1", `echo "[$SSH_AUTH_SOCK]"`)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		b, err := cmd.Output()
		if err != nil || string(b) != "[]\n" {
			t.Fatalf("ssh -A: %q, %v; want no agent socket in the session", b, err)
		}
	})

	t.Run("dynamic forwarding, as VS Code Remote-SSH uses it", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("needs curl (apt-get install curl)")
		}
		port := freePort(t)
		serve := exec.Command("ssh", append(ada.sshOpts(up.SSHPort), ada.Name+"@127.0.0.1",
			"mkdir -p www2 && echo socks-ok > www2/index.html && exec python3 -m http.server "+port+" --bind 127.0.0.1 --directory www2")...)
		if err := serve.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
		socks := freePort(t)
		// VS Code runs `ssh -T -D PORT host bash` and talks through the
		// SOCKS proxy to its server on the remote's loopback.
		fwd := exec.Command("ssh", append(ada.sshOpts(up.SSHPort, "-T", "-D", "127.0.0.1:"+socks), ada.Name+"@127.0.0.1", "bash")...)
		stdin, _ := fwd.StdinPipe()
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stdin.Close(); _ = fwd.Process.Kill(); _ = fwd.Wait() }()
		var out []byte
		eventually(t, 30*time.Second, "an answer through ssh -D", func() bool {
			var err error
			out, err = exec.Command("curl", "-s", "--max-time", "5", "--socks5-hostname", "127.0.0.1:"+socks, "http://localhost:"+port+"/").Output()
			return err == nil && len(out) > 0
		})
		if string(out) != "socks-ok\n" {
			t.Fatalf("through ssh -D: %q", out)
		}
	})

	t.Run("wrong key, unknown user and bad login names are refused", func(t *testing.T) {
		for _, login := range []string{ada.Name, "nosuchuser", "root", "ADA", ada.Name + "+nosuchpool"} {
			// bob's key for any other login, even one naming a pool that
			// does not exist, is refused before the pool is looked at.
			_, errs, code := bob.ssh(t, login, nil, "true")
			if code != 255 || !strings.Contains(errs, "Permission denied") {
				t.Errorf("bob's key as %q: exit %d, stderr %q; want Permission denied", login, code, errs)
			}
		}
		_, errs, code := ada.ssh(t, ada.Name+"+nosuchpool", nil, "true")
		if code != 255 || !strings.Contains(errs, "pool nosuchpool does not exist") {
			t.Errorf("ada+nosuchpool: exit %d, stderr %q; want a message about the pool", code, errs)
		}
	})

	t.Run("sessions are listed and a killed one tells the user", func(t *testing.T) {
		cmd, line, errb := ada.sshLongRunning(t, "echo ready; exec sleep 120")
		if line != "ready" {
			t.Fatalf("got %q before ready", line)
		}
		var list []*dspool.Session
		cliJSON(t, up.userEnv(ada.token), &list, "session", "list")
		if len(list) != 1 || list[0].User != ada.Name || list[0].State != dspool.SessionActive || list[0].Connections != 1 || list[0].NodeName == "" {
			t.Fatalf("session list: %+v", list)
		}
		// bob neither sees nor kills it.
		var bobs []*dspool.Session
		cliJSON(t, up.userEnv(bob.token), &bobs, "session", "list")
		if len(bobs) != 0 {
			t.Fatalf("bob sees sessions %+v", bobs)
		}
		if _, errs, code := cli(t, up.userEnv(bob.token), "session", "kill", list[0].ID); code == 0 || !strings.Contains(errs, "not found") {
			t.Fatalf("bob killed ada's session: exit %d, %q", code, errs)
		}
		cliOK(t, up.userEnv(ada.token), "session", "kill", list[0].ID)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("the killed session's ssh did not exit in 15s")
		}
		if code := cmd.ProcessState.ExitCode(); code != 255 || !strings.Contains(errb.String(), "has ended") {
			t.Fatalf("ssh exit %d, stderr %q; want 255 and a message", code, errb.String())
		}
		var s dspool.Session
		cliJSON(t, up.userEnv(ada.token), &s, "session", "show", list[0].ID)
		if s.State != dspool.SessionEnded || !strings.Contains(s.EndReason, "session kill") || s.BytesOut == 0 {
			t.Fatalf("after kill: %+v", s)
		}
	})

	t.Run("a node that dies ends its sessions with a message", func(t *testing.T) {
		cmd, node, errb := ada.sshLongRunning(t, "echo $DSPOOL_NODE; exec sleep 120")
		if node == "" {
			t.Fatalf("no node name; stderr %q", errb.String())
		}
		began := time.Now()
		if err := syscall.Kill(agentPID(t, filepath.Join(up.Data, "agents", node)), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ssh did not end within 10s of its node's agent dying")
		}
		if code := cmd.ProcessState.ExitCode(); code != 255 || !strings.Contains(errb.String(), "node "+node) {
			t.Fatalf("ssh exit %d, stderr %q; want 255 and a message naming %s", code, errb.String(), node)
		}
		t.Logf("session ended %v after its node died", time.Since(began).Round(time.Millisecond))
		if b, err := os.ReadFile(filepath.Join(up.Share, "home", ada.Name, "shared.txt")); err != nil || !strings.HasPrefix(string(b), "written-on-") {
			t.Fatalf("the share lost a file: %q, %v", b, err)
		}
		up.waitNodes(t, "", 2)
		if out := strings.TrimSpace(ada.sshOK(t, "cat shared.txt")); !strings.HasPrefix(out, "written-on-") {
			t.Fatalf("after the node came back: %q", out)
		}
	})

	t.Run("a removed key no longer logs in", func(t *testing.T) {
		var keys []*dspool.SSHKey
		cliJSON(t, up.userEnv(bob.token), &keys, "key", "list")
		if len(keys) != 1 || keys[0].LastUsed == nil {
			t.Fatalf("bob's keys: %+v; want one, used", keys)
		}
		cliOK(t, up.userEnv(bob.token), "key", "remove", keys[0].Fingerprint)
		if _, errs, code := bob.ssh(t, bob.Name, nil, "true"); code != 255 || !strings.Contains(errs, "Permission denied") {
			t.Fatalf("after key remove: exit %d, stderr %q", code, errs)
		}
	})
}

// TestSSHKeyConfusion is CVE-2024-45337's scenario against the gateway: a
// client offers one user's public key (which the server accepts for that
// user) and then signs with another key. The session, if any, must belong to
// the key that signed.
func TestSSHKeyConfusion(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	up := startUp(t, upConfig{UIDBase: uidBase(13)})
	ada := up.sshUser(t, "e2essh13a")
	bob := up.sshUser(t, "e2essh13b")
	adaKey, bobKey := loadSigner(t, ada.key), loadSigner(t, bob.key)

	// The client first offers bob's public key with a signature made by
	// ada's private key, then ada's key.
	dial := func(login string) (*ssh.Client, error) {
		return ssh.Dial("tcp", "127.0.0.1:"+up.SSHPort, &ssh.ClientConfig{
			User:            login,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(&offerSigner{offer: bobKey.PublicKey(), sign: adaKey}, adaKey)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
	}
	if c, err := dial(bob.Name); err == nil {
		c.Close()
		t.Fatal("logged in as bob with bob's key offered and only ada's key signing")
	}
	c, err := dial(ada.Name)
	if err != nil {
		t.Fatalf("ada, after bob's key was offered: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("id -un")
	if err != nil || strings.TrimSpace(string(out)) != ada.Name {
		t.Fatalf("the session runs as %q (%v), want %s", out, err, ada.Name)
	}
}

// offerSigner offers one public key and signs with another key.
type offerSigner struct {
	offer ssh.PublicKey
	sign  ssh.Signer
}

func (s *offerSigner) PublicKey() ssh.PublicKey { return s.offer }

func (s *offerSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return s.sign.Sign(r, data)
}

func loadSigner(t *testing.T, path string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// TestSSHHostKeyStable: the gateway's host key is kept in the data
// directory, so clients see the same fingerprint after a restart.
func TestSSHHostKeyStable(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	up := startUp(t, upConfig{UIDBase: uidBase(14)})
	scan := func(port string) string {
		t.Helper()
		out, err := exec.Command("ssh-keyscan", "-T", "10", "-t", "ed25519", "-p", port, "127.0.0.1").Output()
		if err != nil || !strings.Contains(string(out), "ssh-ed25519 ") {
			t.Fatalf("ssh-keyscan: %q, %v", out, err)
		}
		f := strings.Fields(string(out))
		return f[len(f)-1]
	}
	before := scan(up.SSHPort)
	up.Stop()
	up2 := startUp(t, upConfig{UIDBase: uidBase(14), Data: up.Data, Login: up.Login})
	if after := scan(up2.SSHPort); after != before {
		t.Fatalf("host key changed across a restart: %s, then %s", before, after)
	}
	if st, err := os.Stat(filepath.Join(up.Data, "ssh_host_ed25519_key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v, %v; want mode 0600", st, err)
	}
}

// TestAgentListensNowhere: a node takes session streams only on the
// connection it dialled to the control plane; its agent has no listening
// socket anyone could reach.
func TestAgentListensNowhere(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(16)})
	pid := agentPID(t, filepath.Join(up.Data, "agents", "default-1"))
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	sockets := map[string]bool{}
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(target, "socket:[") {
			sockets[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	if len(sockets) == 0 {
		t.Fatal("the agent has no sockets at all; is it connected?")
	}
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !sockets[f[9]] {
				continue
			}
			// TCP state 0A is LISTEN; any UDP socket would take datagrams.
			if strings.HasPrefix(table, "udp") || f[3] == "0A" {
				t.Errorf("the agent has a %s socket open to others: %s", table, line)
			}
		}
	}
}
