package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

const sshd = "/usr/sbin/sshd" // sshd must be started by its absolute path

// sshdPeer is a private sshd on 127.0.0.1 that lets peerUser in.
type sshdPeer struct {
	port        int
	log         string
	cmd         *exec.Cmd
	done        chan struct{}
	createdUser bool // userdel it at the end
}

// startSSHD creates peerUser if absent and starts sshd in dir with its own
// host key and config, in the foreground, so that it is stopped by its PID.
// On error it has undone what it did.
func startSSHD(ctx context.Context, dir, authorizedKey string) (p *sshdPeer, err error) {
	if _, err := os.Stat(sshd); err != nil {
		return nil, fmt.Errorf("no sshd at %s: install it with `apt-get install -y openssh-server`", sshd)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the OpenSSH peer needs root: it creates a user and runs sshd")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p = &sshdPeer{log: filepath.Join(dir, "sshd.log")}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	if !host.UserExists(peerUser) {
		if err := command(ctx, "useradd", "-m", "-s", "/bin/bash", peerUser); err != nil {
			return p, err
		}
		p.createdUser = true
	} else {
		host.Logf("openssh: user %s exists already; it is used and left in place", peerUser)
	}
	// The privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return p, err
	}
	if err := os.Chmod("/run/sshd", 0o755); err != nil {
		return p, err
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	if err := keygen(ctx, hostKey); err != nil {
		return p, err
	}
	// The key is authorized in a file of our own rather than in the user's
	// home, which is not ours when the user existed. The file lies under the
	// world-writable temporary directory, which StrictModes refuses.
	pub, err := os.ReadFile(authorizedKey)
	if err != nil {
		return p, err
	}
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, pub, 0o644); err != nil {
		return p, err
	}
	if p.port, err = host.FreePort(); err != nil {
		return p, err
	}
	config := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(config, fmt.Appendf(nil, `ListenAddress 127.0.0.1:%d
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
`, p.port, hostKey, filepath.Join(dir, "sshd.pid"), keys, peerUser), 0o644); err != nil {
		return p, err
	}
	if err := command(ctx, sshd, "-t", "-f", config); err != nil {
		return p, err
	}
	p.cmd = exec.Command(sshd, "-D", "-f", config, "-E", p.log)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // should this program be killed
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	err = host.Poll(ctx, 10*time.Second, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			return false, fmt.Errorf("sshd exited: %s", host.Tail(b, 3))
		default:
		}
		return host.Listening(p.port), nil
	})
	if err != nil {
		return p, fmt.Errorf("sshd: %w", err)
	}
	host.Logf("openssh: sshd (pid %d) on 127.0.0.1:%d", p.cmd.Process.Pid, p.port)
	return p, nil
}

// stop stops sshd by its PID (SIGTERM, SIGKILL after 5s) and removes the
// user if it was created here.
func (p *sshdPeer) stop() {
	if p.done != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if p.createdUser {
		host.RemoveUser(peerUser, "-r")
	}
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
