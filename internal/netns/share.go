package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Share is a directory of one host mounted on others over sshfs, as root:
// a real network share between the hosts.
type Share struct {
	Mounts map[int]string // the mount point on each host
	Log    string         // sshd's log
	h      *Hosts
	from   int
	dir    string
	work   string
	others []string // MountAs's mount points
	n      int
	sshd   *exec.Cmd
	done   chan struct{}
}

// ServeShare runs a private sshd on host from (port 22, its own host key,
// root's logins with a key of its own) and mounts dir with sshfs on each
// host of on (from itself too), at work/share-on-hN. Keys and sshd's log
// go to work. The mounts reconnect (a host whose link comes back gets its
// share back), keep no data cache and cache attributes for 30 s, as a
// network share does. On error it has undone what it did.
func (h *Hosts) ServeShare(from int, dir, work string, on ...int) (s *Share, err error) {
	for _, c := range []string{"sshfs", "fusermount3", "/usr/sbin/sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%w: needs %s (apt-get install sshfs fuse3 openssh-server openssh-client)", ErrUnavailable, c)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("%w: needs FUSE (/dev/fuse)", ErrUnavailable)
	}
	for _, k := range []string{"share_host", "share_client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(work, k)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(work, "share_client.pub"))
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(work, "share_authorized_keys")
	// Readable by all: sshd reads it as the account that logs in, and
	// MountAs mounts as accounts that are not root.
	if err := os.WriteFile(keys, pub, 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		return nil, err
	}
	s = &Share{Mounts: map[int]string{}, Log: filepath.Join(work, "share-sshd.log"), h: h, from: from, dir: dir, work: work, done: make(chan struct{})}
	log, err := os.Create(s.Log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	s.sshd = h.Command(from, "/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null",
		"-o", "ListenAddress="+h.Addr(from)+":22", "-o", "HostKey="+filepath.Join(work, "share_host"), "-o", "PidFile=none",
		"-o", "AuthorizedKeysFile="+keys, "-o", "PasswordAuthentication=no",
		"-o", "PermitRootLogin=prohibit-password", "-o", "StrictModes=no", "-o", "Subsystem=sftp internal-sftp")
	s.sshd.Stdout, s.sshd.Stderr = log, log
	s.sshd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // should our process be killed
	if err := s.sshd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd on host %d: %w", from, err)
	}
	go func() { _ = s.sshd.Wait(); close(s.done) }()
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, j := range on {
		if _, err := s.mount(j, "root", fmt.Sprintf("share-on-h%d", j), "allow_other"); err != nil {
			return s, err
		}
	}
	return s, nil
}

// MountAs mounts the share once more on host j, as the file server's
// account (root, or one that exists with a password that is not locked:
// '*'), with the sshfs options opts besides the usual ones (allow_other is
// not one of them), and returns the mount point. Every file made through
// a mount as another account than root belongs to it, as on an SMB mount
// with uid=.
func (s *Share) MountAs(j int, account string, opts ...string) (string, error) {
	s.n++
	return s.mount(j, account, fmt.Sprintf("share-on-h%d-%d", j, s.n), opts...)
}

// Unmount unmounts a mount point MountAs made.
func (s *Share) Unmount(mnt string) error {
	i := slices.Index(s.others, mnt)
	if i < 0 {
		return fmt.Errorf("%s is not a mount of MountAs", mnt)
	}
	s.others = slices.Delete(s.others, i, i+1)
	if out, err := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("unmount %s: %v: %s", mnt, err, out)
	}
	return nil
}

// mount mounts the share on host j at work/name as account, retrying while
// sshd does not listen yet.
func (s *Share) mount(j int, account, name string, opts ...string) (string, error) {
	mnt := filepath.Join(s.work, name)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return "", err
	}
	args := []string{"-o", "IdentityFile=" + filepath.Join(s.work, "share_client"), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=2",
		"-o", "reconnect", "-o", "cache=no", "-o", "attr_timeout=30", "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	args = append(args, account+"@"+s.h.Addr(s.from)+":"+s.dir, mnt)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := s.h.Command(j, "sshfs", args...).CombinedOutput()
		if err == nil {
			if s.Mounts[j] == "" {
				s.Mounts[j] = mnt
			} else {
				s.others = append(s.others, mnt)
			}
			return mnt, nil
		}
		last := fmt.Errorf("sshfs on host %d: %v: %s", j, err, strings.TrimSpace(string(out)))
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.Log)
			return "", fmt.Errorf("%w (sshd's log: %s)", last, strings.TrimSpace(string(b)))
		}
	}
}

// Close unmounts the share everywhere and stops sshd.
func (s *Share) Close() error {
	var errs []error
	for j, mnt := range s.Mounts {
		if out, err := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("unmount the share on host %d: %v: %s", j, err, out))
		}
	}
	for _, mnt := range s.others {
		if out, err := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %v: %s", mnt, err, out))
		}
	}
	if s.sshd.Process != nil {
		_ = s.sshd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.sshd.Process.Kill()
			<-s.done
		}
	}
	return errors.Join(errs...)
}
