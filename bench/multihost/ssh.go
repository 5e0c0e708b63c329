package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
)

// references measures what the SSH throughput figures are bounded by: the
// same bytes into a local `cat`, and over plain TCP from h4 to h2.
func references(ctx context.Context, c *cluster, n Sizes, r *Results) {
	host.Logf("references: %d x %d MiB into a local `cat`, and over TCP from h4 to h2", n.TputRuns, n.MiB)
	r.Pipe, r.TCP = &openssh.Tput{}, &openssh.Tput{}
	for range n.TputRuns {
		if r.Pipe.Error == "" {
			r.Pipe.Add(openssh.Transfer(ctx, n.MiB, nil, "cat"))
		}
		if r.TCP.Error == "" {
			r.TCP.Add(tcpTransfer(ctx, c, n.MiB))
		}
	}
	for _, from := range []int{h1, h2} {
		hs := handshakes(ctx, c, from, n.Runs)
		r.Handshakes = append(r.Handshakes, hs)
		if hs.Error != "" {
			host.Logf("%s", hs.Error)
			continue
		}
		host.Logf("TLS handshake from %s to %s: p50 %.2f ms (a TCP connect alone %.2f)", hs.From, hs.To, hs.TLS.P50Ms, hs.TCP.P50Ms)
	}
	for name, tp := range map[string]*openssh.Tput{"local pipe": r.Pipe, "TCP h4 -> h2": r.TCP} {
		if tp.Error != "" {
			host.Logf("%s: %s", name, tp.Error)
			continue
		}
		tp.Finish(n.MiB)
		host.Logf("%s: %.0f MiB/s (%s)", name, tp.MiBPerS, tp.Spread(n.MiB))
	}
}

// tcpTransfer sends mib MiB of zeros from h4 to a reader in h2 that
// discards them, in the transfers' 256 KiB writes: from the connection's
// first write to the reader's last read (data), and from the dial (wall).
func tcpTransfer(ctx context.Context, c *cluster, mib int) (data, wall time.Duration, err error) {
	ln, err := c.h.Listen(h2, "tcp", c.h.Addr(h2)+":0")
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	read := make(chan error, 1)
	var end time.Time
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			read <- err
			return
		}
		defer conn.Close()
		_, err = io.Copy(io.Discard, conn)
		end = time.Now()
		read <- err
	}()
	ctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(mib)*time.Second/10)
	defer cancel()
	t0 := time.Now()
	conn, err := c.h.Dialer(h4, &net.Dialer{})(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, 0, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, 256<<10)
	t1 := time.Now()
	for i := 0; i < mib*(1<<20)/len(buf) && err == nil; i++ {
		_, err = conn.Write(buf)
	}
	err = errors.Join(err, conn.Close(), <-read)
	if err != nil {
		return 0, 0, fmt.Errorf("TCP h4 -> h2: %w", err)
	}
	return end.Sub(t1), end.Sub(t0), nil
}

// Handshakes are new connections to dspool server's API, the way its agents
// open one per SSH session's data: a TCP connect, and the same with a TLS
// handshake (the agents' TLS settings but the pin: the CA's file).
type Handshakes struct {
	From  string           `json:"from"`
	To    string           `json:"to"`
	TCP   *openssh.Latency `json:"tcp_connect"`
	TLS   *openssh.Latency `json:"tcp_connect_tls_handshake"`
	Error string           `json:"error,omitempty"`
}

func handshakes(ctx context.Context, c *cluster, from, runs int) *Handshakes {
	addr := fmt.Sprintf("%s:%d", c.h.Addr(h1), apiPort)
	if from == h1 {
		addr = fmt.Sprintf("127.0.0.1:%d", apiPort)
	}
	hs := &Handshakes{From: fmt.Sprintf("h%d", from), To: addr, TCP: &openssh.Latency{}, TLS: &openssh.Latency{}}
	dial := c.h.Dialer(from, &net.Dialer{Timeout: 5 * time.Second})
	cfg := c.variants[0].plane.tls.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	for range runs {
		for _, withTLS := range []bool{false, true} {
			t0 := time.Now()
			conn, err := dial(ctx, "tcp", addr)
			if err == nil && withTLS {
				tc := tls.Client(conn, cfg)
				err, conn = tc.HandshakeContext(ctx), tc
			}
			d := time.Since(t0)
			if conn != nil {
				conn.Close()
			}
			if err != nil {
				hs.Error = fmt.Sprintf("a connection from %s to %s: %v", hs.From, addr, err)
				return hs
			}
			if withTLS {
				hs.TLS.Add(d)
			} else {
				hs.TCP.Add(d)
			}
		}
	}
	return hs
}

// hostPIDs are the processes on the hosts.
func hostPIDs(c *cluster) map[string]bool {
	pids := map[string]bool{}
	for i := 1; i <= c.h.N(); i++ {
		out, _ := exec.Command("ip", "netns", "pids", c.h.Name(i)).Output()
		for pid := range strings.FieldsSeq(string(out)) {
			pids[pid] = true
		}
	}
	return pids
}

// cpuOf is the cpu time spent so far by the processes on the hosts (the
// control planes, agents, sshd, and the children they reaped: sessions'
// processes, sshd's connections) and by this program's reaped children
// (the ssh clients, with their ProxyCommand): everything a transfer runs,
// and not what else this machine runs.
func cpuOf(pids map[string]bool) time.Duration {
	var ticks int64 // USER_HZ: 100 a second
	for pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		// After the command's closing parenthesis: utime, stime, cutime
		// and cstime are the 12th to 15th fields.
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		for _, v := range f[11:min(15, len(f))] {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ticks)*10*time.Millisecond + time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
}

// transferCPU is one transfer on t, and the cpu time it cost: counted once
// the processes it started on the hosts are gone (a process's time reaches
// its parent's count only once the parent has reaped it).
func transferCPU(ctx context.Context, c *cluster, t *SSHTarget, mib int, cipher string) (data, wall, cpu time.Duration, err error) {
	before := hostPIDs(c)
	cpu0 := cpuOf(before)
	data, wall, err = t.e.Transfer(ctx, mib, cipher, "cat >/dev/null")
	if err != nil {
		return 0, 0, 0, err
	}
	_ = host.Poll(ctx, 5*time.Second, 10*time.Millisecond, func() (bool, error) {
		for pid := range hostPIDs(c) {
			if !before[pid] {
				return false, nil
			}
		}
		return true, nil
	})
	time.Sleep(50 * time.Millisecond) // for the parents to reap what exited
	return data, wall, cpuOf(before) - cpu0, nil
}

// sshPhase measures every SSH target: one verbose login (which checks the
// key and records what was negotiated), then connect+exec and throughput,
// the targets taking turns sample by sample so that each sees the same
// minutes of this machine.
func sshPhase(ctx context.Context, c *cluster, n Sizes, cipher string, r *Results) {
	targets := []*SSHTarget{r.Variants[0].SSH, r.Direct, r.Jump}
	for _, v := range r.Variants[1:] {
		targets = append(targets, v.SSH)
	}
	var live []*SSHTarget
	for _, t := range targets {
		port := t.e.Port
		addr := fmt.Sprintf("%s:%d", t.e.Host, port)
		if t.e.Jump != nil {
			addr = fmt.Sprintf("%s:%d", t.e.Jump.Host, t.e.Jump.Port)
		}
		t.Banner = openssh.Banner(ctx, addr, c.h.Dialer(h4, &net.Dialer{}))
		neg, err := t.e.Probe(ctx)
		if err != nil {
			t.Error = "first login: " + err.Error()
			host.Logf("%s: %s", t.Name, t.Error)
			continue
		}
		t.Kex, t.HostKey, t.Cipher = neg.Kex, neg.HostKey, neg.Cipher
		t.Latency, t.Tput = &openssh.Latency{}, &openssh.Tput{}
		host.Logf("%s (%s): %s, kex %s, host key %s, cipher %s", t.Name, t.Route, t.Banner, t.Kex, t.HostKey, t.Cipher)
		live = append(live, t)
	}
	host.Logf("connect+exec: %d rounds of `ssh ... true` on %d targets in turn", n.Runs, len(live))
	for i := range n.Runs {
		for _, t := range inTurn(live, i) {
			if t.Error != "" || ctx.Err() != nil {
				continue
			}
			d, err := t.e.ConnectExec(ctx)
			if err != nil {
				t.Error = "connect+exec: " + err.Error()
				continue
			}
			t.Latency.Add(d)
		}
	}
	host.Logf("throughput: %d rounds of %d MiB into `ssh -c %s ... 'cat >/dev/null'` on %d targets in turn", n.TputRuns, n.MiB, cipher, len(live))
	for i := range n.TputRuns {
		for _, t := range inTurn(live, i) {
			if t.Error == "" && t.Tput.Error == "" && ctx.Err() == nil {
				data, wall, cpu, err := transferCPU(ctx, c, t, n.MiB, cipher)
				if t.Tput.Add(data, wall, err); err == nil {
					t.CPUPerGiB = append(t.CPUPerGiB, cpu.Seconds()*1024/float64(n.MiB))
				}
			}
		}
	}
	for _, t := range live {
		switch {
		case t.Error != "":
			host.Logf("%s: %s", t.Name, t.Error)
		case t.Tput.Error != "":
			host.Logf("%s: throughput: %s", t.Name, t.Tput.Error)
		default:
			t.Tput.Finish(n.MiB)
			host.Logf("%s: connect+exec p50 %.1f ms (%.1f-%.1f); %.0f MiB/s (%s), %.2f cpu-s per GiB", t.Name, t.Latency.P50Ms, t.Latency.MinMs, t.Latency.MaxMs,
				t.Tput.MiBPerS, t.Tput.Spread(n.MiB), median(t.CPUPerGiB))
		}
	}
}

// inTurn is the order of the targets in round i: the list, reversed every
// other round, so that no target always follows the same one. What one
// leaves behind can speed up the next: on cgroup v1 a node's first
// process after a pause pays a wait for the kernel (an RCU grace period
// when its thread joins the session's cgroups), one that follows another
// dspool node's rarely does.
func inTurn(ts []*SSHTarget, i int) []*SSHTarget {
	if i%2 == 0 {
		return ts
	}
	r := slices.Clone(ts)
	slices.Reverse(r)
	return r
}
