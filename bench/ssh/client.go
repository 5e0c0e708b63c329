package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/dspool/dspool/bench/internal/host"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// endpoint is an SSH server on 127.0.0.1 that user logs in to with key.
type endpoint struct {
	user string
	port int
	key  string // the client's private key
	kex  string // KexAlgorithms, if not the default
	jump bool   // reach it through itself as a jump host (ProxyCommand ssh -W)
}

// opts are the client's options, the same for every target: no config
// file, the one key, a fresh connection each time (no multiplexing), no
// host key check (the gateway's is new on each run), no compression.
func (e endpoint) opts(logLevel, cipher string) []string {
	o := []string{"-F", "none", "-p", strconv.Itoa(e.port), "-i", e.key,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ControlMaster=no", "-o", "ControlPath=none",
		"-o", "Compression=no", "-o", "LogLevel=" + logLevel}
	if e.kex != "" {
		o = append(o, "-o", "KexAlgorithms="+e.kex)
	}
	if cipher != "" {
		o = append(o, "-c", cipher)
	}
	if e.jump {
		// The hop has the same options (and cipher); spelled out rather
		// than -J so that it uses them.
		hop := e
		hop.jump = false
		argv := append(append([]string{sshClient}, hop.opts("ERROR", cipher)...), "-W", "%h:%p", e.user+"@127.0.0.1")
		o = append(o, "-o", "ProxyCommand="+shellJoin(argv))
	}
	return o
}

// args are ssh's arguments to run command on the endpoint.
func (e endpoint) args(logLevel, cipher string, command ...string) []string {
	return append(append(e.opts(logLevel, cipher), e.user+"@127.0.0.1"), command...)
}

// runSSH runs ssh with args and stdin from /dev/null, within timeout.
func runSSH(ctx context.Context, timeout time.Duration, args []string) (stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, sshClient, args...)
	cmd.Stderr = &buf
	cmd.WaitDelay = 5 * time.Second // a ProxyCommand's ssh may hold the pipe
	err = cmd.Run()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		err = fmt.Errorf("ssh: %v: %s", err, sshErrors(buf.Bytes()))
	}
	return buf.Bytes(), err
}

// sshErrors is the end of ssh's stderr, without its debug output.
func sshErrors(stderr []byte) string {
	var keep []string
	for l := range strings.Lines(string(stderr)) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debug") &&
			!strings.HasPrefix(l, "Transferred:") && !strings.HasPrefix(l, "Bytes per second:") {
			keep = append(keep, l)
		}
	}
	return host.Tail([]byte(strings.Join(keep, "\n")), 3)
}

var kexLine = regexp.MustCompile(`kex: (algorithm|host key algorithm|client->server cipher): (\S+)`)

// probe logs in once, verbosely, and records what was negotiated.
func probe(ctx context.Context, t *Target, e endpoint) error {
	out, err := runSSH(ctx, 30*time.Second, e.args("DEBUG1", "", "true"))
	if err != nil {
		return err
	}
	for _, m := range kexLine.FindAllSubmatch(out, -1) {
		v := string(m[2])
		switch string(m[1]) {
		case "algorithm":
			t.Kex = v
		case "host key algorithm":
			t.HostKey = v
		default:
			t.Cipher = v
		}
	}
	return nil
}

// latency times runs of `ssh ... true`, one after another, each a new
// connection (TCP, key exchange, authentication, session, exec).
func latency(ctx context.Context, e endpoint, runs int) (*Latency, error) {
	l := &Latency{}
	for i := range runs {
		t0 := time.Now()
		if _, err := runSSH(ctx, 30*time.Second, e.args("ERROR", "", "true")); err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		l.SamplesMs = append(l.SamplesMs, float64(time.Since(t0).Microseconds())/1000)
	}
	s := slices.Sorted(slices.Values(l.SamplesMs))
	// Nearest-rank percentiles: the ceil(n*p/100)-th sample.
	l.P50Ms, l.P90Ms = s[(len(s)+1)/2-1], s[(9*len(s)+9)/10-1]
	l.MinMs, l.MaxMs = s[0], s[len(s)-1]
	return l, nil
}

// throughput pipes n.MiB MiB of zeros into name's stdin, n.TputRuns times,
// and reports the MiB/s of the median run.
func throughput(ctx context.Context, n Sizes, name string, args []string) *Tput {
	tp := &Tput{}
	for range n.TputRuns {
		if tp.add(transfer(ctx, n.MiB, name, args)); tp.Error != "" {
			return tp
		}
	}
	tp.finish(n.MiB)
	return tp
}

// add records one transfer.
func (tp *Tput) add(data, wall time.Duration, err error) {
	if err != nil {
		tp.Error = err.Error()
		return
	}
	tp.DataS, tp.WallS = append(tp.DataS, data.Seconds()), append(tp.WallS, wall.Seconds())
}

// finish sets the figures of the median transfer.
func (tp *Tput) finish(mib int) {
	tp.MiBPerS, tp.WallMiBPerS = float64(mib)/median(tp.DataS), float64(mib)/median(tp.WallS)
}

// spread is the slowest and fastest transfer, in MiB/s.
func (tp *Tput) spread(mib int) string {
	return fmt.Sprintf("%.0f-%.0f", float64(mib)/slices.Max(tp.DataS), float64(mib)/slices.Min(tp.DataS))
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[(len(s)+1)/2-1]
}

// chunk is the size of each write into the process's stdin. It is larger
// than a pipe's buffer (64 KiB), so the first write returns only once the
// process reads its input: for ssh, once the session is open.
const chunk = 256 << 10

// transfer writes mib MiB of zeros into the stdin of a new process name
// args and waits for it to exit. It returns the time from the first write's
// return to the exit (the data), and from the start to the exit (wall).
func transfer(ctx context.Context, mib int, name string, args []string) (data, wall time.Duration, err error) {
	// Generous: 10 MiB/s would be very slow on loopback.
	timeout := time.Minute + time.Duration(mib)*time.Second/10
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr // stdout: /dev/null
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	var t1 time.Time // set before written is sent
	written := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		var err error
		for i := 0; i < mib*(1<<20)/chunk && err == nil; i++ {
			if _, err = in.Write(buf); i == 0 {
				t1 = time.Now()
			}
		}
		written <- errors.Join(err, in.Close())
	}()
	err = cmd.Wait()
	t2 := time.Now()
	werr := <-written
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return 0, 0, fmt.Errorf("%s: timed out after %s: %s", name, timeout, sshErrors(stderr.Bytes()))
	case err != nil:
		return 0, 0, fmt.Errorf("%s: %v: %s", name, err, sshErrors(stderr.Bytes()))
	case werr != nil:
		return 0, 0, fmt.Errorf("%s: writing its input: %v", name, werr)
	}
	return t2.Sub(t1), t2.Sub(t0), nil
}

// banner returns the server's identification string ("SSH-2.0-...").
func banner(port int) string {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
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
