package openssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// ServerConfig is a private sshd. Dir, Listen, User and AuthorizedKey are
// required.
type ServerConfig struct {
	Dir           string // its host key, config and log
	Listen        string // HOST:PORT
	User          string // the only user it lets in (it must exist)
	AuthorizedKey string // the client's public key file
	// Command makes its command (nil: exec.Command), e.g. on another
	// host; Dial reaches its address (nil: from here).
	Command func(name string, args ...string) *exec.Cmd
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Server is a running private sshd.
type Server struct {
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartServer starts sshd in the foreground with its own host key and config
// in c.Dir, so that it is stopped by its PID, and waits until it accepts
// connections: `UsePAM yes`, public keys only, `AllowUsers USER`, TCP
// forwarding allowed (a jump host), the client's key authorized in a file
// of Dir rather than the user's home (which is not ours when the user
// existed; Dir lies under the world-writable temporary directory, which
// StrictModes refuses). On error it has stopped what it started.
func StartServer(ctx context.Context, c ServerConfig) (*Server, error) {
	if _, err := os.Stat(SSHD); err != nil {
		return nil, fmt.Errorf("no sshd at %s: install it with `apt-get install -y openssh-server`", SSHD)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("a private sshd needs root")
	}
	if c.Command == nil {
		c.Command = exec.Command
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	// The privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	hostKey := filepath.Join(c.Dir, "host_ed25519")
	if err := MakeKey(ctx, hostKey); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(c.AuthorizedKey)
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(c.Dir, "authorized_keys")
	if err := os.WriteFile(keys, pub, 0o644); err != nil {
		return nil, err
	}
	config := filepath.Join(c.Dir, "sshd_config")
	if err := os.WriteFile(config, fmt.Appendf(nil, `ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
PermitRootLogin no
AllowUsers %s
AllowTcpForwarding yes
UseDNS no
PrintMotd no
MaxStartups 100:30:200
LogLevel ERROR
`, c.Listen, hostKey, filepath.Join(c.Dir, "sshd.pid"), keys, c.User), 0o644); err != nil {
		return nil, err
	}
	if err := command(ctx, SSHD, "-t", "-f", config); err != nil {
		return nil, err
	}
	s := &Server{Log: filepath.Join(c.Dir, "sshd.log"), done: make(chan struct{})}
	s.cmd = c.Command(SSHD, "-D", "-f", config, "-E", s.Log)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // should this program be killed
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	err = host.Poll(ctx, 10*time.Second, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.Log)
			return false, fmt.Errorf("sshd exited: %s", host.Tail(b, 3))
		default:
		}
		conn, err := c.Dial(ctx, "tcp", c.Listen)
		if err == nil {
			conn.Close()
		}
		return err == nil, nil
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("sshd: %w", err)
	}
	host.Logf("openssh: sshd (pid %d) on %s", s.cmd.Process.Pid, c.Listen)
	return s, nil
}

// Stop stops sshd by its PID: SIGTERM, SIGKILL after 5s.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// PeerUser creates the account name (useradd -m) unless it exists, and
// returns what removes it again (userdel -r), only if it was created here.
func PeerUser(ctx context.Context, name string) (remove func(), err error) {
	if host.UserExists(name) {
		host.Logf("openssh: user %s exists already; it is used and left in place", name)
		return func() {}, nil
	}
	if err := command(ctx, "useradd", "-m", "-s", "/bin/bash", name); err != nil {
		return nil, err
	}
	return func() { host.RemoveUser(name, "-r") }, nil
}

// command runs name args within 30s; its output goes into the error.
func command(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %v: %s", name, args, err, host.Tail(out, 3))
	}
	return nil
}
