// Package openssh drives OpenSSH for the benchmarks: the client's options,
// the same for every target; connect+exec samples; timed bulk transfers
// into a process's standard input; and a private sshd that lets one user
// in with one key. It installs nothing and creates no account.
package openssh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// The programs, by their absolute paths (sshd must be started by its own).
const (
	Client = "/usr/bin/ssh"
	Keygen = "/usr/bin/ssh-keygen"
	SSHD   = "/usr/sbin/sshd"
)

// Endpoint is an SSH server that User logs in to with Key.
type Endpoint struct {
	User string
	Host string // an address
	Port int
	Key  string // the client's private key
	Kex  string // KexAlgorithms, if not the default
	// Jump is the host to reach this one through (ProxyCommand ssh -W,
	// what ssh -J does, spelled out so that the hop has the same options).
	Jump *Endpoint
	// Start starts the client's processes (nil: cmd.Start), e.g. on
	// another host.
	Start func(*exec.Cmd) error
}

// Opts are the client's options, the same for every target: no config
// file, the one key, a fresh connection each time (no multiplexing), no
// host key check (a gateway's is new on each run), no compression.
func (e Endpoint) Opts(logLevel, cipher string) []string {
	o := []string{"-F", "none", "-p", strconv.Itoa(e.Port), "-i", e.Key,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ControlMaster=no", "-o", "ControlPath=none",
		"-o", "Compression=no", "-o", "LogLevel=" + logLevel}
	if e.Kex != "" {
		o = append(o, "-o", "KexAlgorithms="+e.Kex)
	}
	if cipher != "" {
		o = append(o, "-c", cipher)
	}
	if e.Jump != nil {
		argv := append(append([]string{Client}, e.Jump.Opts("ERROR", cipher)...), "-W", "%h:%p", e.Jump.User+"@"+e.Jump.Host)
		o = append(o, "-o", "ProxyCommand="+shellJoin(argv))
	}
	return o
}

// Args are ssh's arguments to run command on the endpoint.
func (e Endpoint) Args(logLevel, cipher string, command ...string) []string {
	return append(append(e.Opts(logLevel, cipher), e.User+"@"+e.Host), command...)
}

func (e Endpoint) start(cmd *exec.Cmd) error {
	if e.Start != nil {
		return e.Start(cmd)
	}
	return cmd.Start()
}

// Run runs ssh with args and stdin from /dev/null, within timeout, and
// returns its standard error.
func (e Endpoint) Run(ctx context.Context, timeout time.Duration, args []string) (stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, Client, args...)
	cmd.Stderr = &buf
	cmd.WaitDelay = 5 * time.Second // a ProxyCommand's ssh may hold the pipe
	if err = e.start(cmd); err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		err = fmt.Errorf("ssh: %v: %s", err, Errors(buf.Bytes()))
	}
	return buf.Bytes(), err
}

// Errors is the end of ssh's stderr, without its debug output.
func Errors(stderr []byte) string {
	var keep []string
	for l := range strings.Lines(string(stderr)) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debug") &&
			!strings.HasPrefix(l, "Transferred:") && !strings.HasPrefix(l, "Bytes per second:") {
			keep = append(keep, l)
		}
	}
	return host.Tail([]byte(strings.Join(keep, "\n")), 3)
}

// Negotiated is what a login with the default options agreed on.
type Negotiated struct {
	Kex, HostKey, Cipher string // Cipher: client->server
}

var kexLine = regexp.MustCompile(`kex: (algorithm|host key algorithm|client->server cipher): (\S+)`)

// Probe logs in once, verbosely: it checks that the key is accepted and
// tells what the default options negotiate.
func (e Endpoint) Probe(ctx context.Context) (Negotiated, error) {
	var n Negotiated
	out, err := e.Run(ctx, 30*time.Second, e.Args("DEBUG1", "", "true"))
	if err != nil {
		return n, err
	}
	for _, m := range kexLine.FindAllSubmatch(out, -1) {
		v := string(m[2])
		switch string(m[1]) {
		case "algorithm":
			n.Kex = v
		case "host key algorithm":
			n.HostKey = v
		default:
			n.Cipher = v
		}
	}
	return n, nil
}

// ConnectExec times one `ssh ... true`: a new process and connection (TCP,
// key exchange, authentication, session, exec).
func (e Endpoint) ConnectExec(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	_, err := e.Run(ctx, 30*time.Second, e.Args("ERROR", "", "true"))
	return time.Since(t0), err
}

// Latency is samples of a duration (connect+exec, or submit->start) and
// their nearest-rank percentiles, in ms.
type Latency struct {
	SamplesMs []float64 `json:"samples_ms"`
	P50Ms     float64   `json:"p50_ms"`
	P90Ms     float64   `json:"p90_ms"`
	MinMs     float64   `json:"min_ms"`
	MaxMs     float64   `json:"max_ms"`
}

// Add records a sample.
func (l *Latency) Add(d time.Duration) {
	l.SamplesMs = append(l.SamplesMs, float64(d.Microseconds())/1000)
	s := slices.Sorted(slices.Values(l.SamplesMs))
	l.P50Ms, l.P90Ms = host.Pct(s, 50), host.Pct(s, 90)
	l.MinMs, l.MaxMs = s[0], s[len(s)-1]
}

// Banner returns the identification string ("SSH-2.0-...") of the server
// at addr, dialled with dial (nil: from here).
func Banner(ctx context.Context, addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) string {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(io.LimitReader(c, 255)).ReadString('\n')
	return strings.TrimSpace(line)
}

// shellJoin quotes argv for sh -c (ssh runs a ProxyCommand with the shell).
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_+=:,./-") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// MakeKey writes a new ed25519 key pair without passphrase to path and
// path.pub.
func MakeKey(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Keygen, "-q", "-t", "ed25519", "-N", "", "-C", "dspool-bench", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, host.Tail(out, 3))
	}
	return nil
}

// ClientVersion is `ssh -V`.
func ClientVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, Client, "-V").CombinedOutput()
	return strings.TrimSpace(string(out))
}
