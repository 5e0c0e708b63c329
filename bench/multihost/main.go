// Command multihost measures dspool across machines: "hosts" made of
// network namespaces on one bridge (package netns), the control plane in
// h1, a node in h2 joined over the verified (HTTPS) agent link with the
// share mounted from h1 over sshfs, and the clients in h4. Beside it, in
// the same run: OpenSSH in h2 reached from h4 directly and through a jump
// host in h1, and the cost of TLS on the agent link (a node in h1 reached
// over HTTPS, and one over plain HTTP on loopback, the only place dspool
// allows it). See bench/multihost/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
	"github.com/dspool/dspool/internal/netns"
)

const aesGCM = "aes128-gcm@openssh.com"

// Sizes are how much each measurement does.
type Sizes struct {
	Runs        int     `json:"runs"`      // connect+exec samples per target
	MiB         int     `json:"mib"`       // bytes per transfer, in MiB
	TputRuns    int     `json:"tput_runs"` // transfers per target; the median is reported
	Jobs        int     `json:"jobs"`      // submit->start samples per dspool variant
	CellS       float64 `json:"cell_s"`    // each Jupyter cell, seconds, in Slices slices
	Slices      int     `json:"slices"`
	Concurrency []int   `json:"concurrency"`
}

// slice is the duration of one slice of a Jupyter cell.
func (n Sizes) slice() time.Duration {
	return time.Duration(n.CellS * float64(time.Second) / float64(n.Slices))
}

// SSHTarget is what was measured through one SSH server.
type SSHTarget struct {
	Name    string           `json:"name"`
	Route   string           `json:"route"` // how the client in h4 reaches the shell
	Error   string           `json:"error,omitempty"`
	Banner  string           `json:"banner,omitempty"`
	Kex     string           `json:"kex,omitempty"` // negotiated with the default options
	HostKey string           `json:"host_key,omitempty"`
	Cipher  string           `json:"default_cipher,omitempty"`
	Latency *openssh.Latency `json:"connect_exec,omitempty"`
	Tput    *openssh.Tput    `json:"throughput,omitempty"` // with -c Results.Cipher
	// CPUPerGiB is the cpu time spent per GiB, each transfer, by the
	// processes on the hosts and the ssh client (see cpuOf).
	CPUPerGiB []float64 `json:"cpu_s_per_gib,omitempty"`
	e         openssh.Endpoint
}

// Variant is a dspool node reached one way: its host and its agent link.
type Variant struct {
	Key          string           `json:"key"`
	Link         string           `json:"link"` // what serves it and how its agent reaches the control plane
	SSH          *SSHTarget       `json:"ssh"`
	Jupyter      []*Cell          `json:"jupyter,omitempty"`
	JupyterError string           `json:"jupyter_error,omitempty"`
	Jobs         *openssh.Latency `json:"submit_start,omitempty"` // ms
	JobsError    string           `json:"jobs_error,omitempty"`
	v            *variant
}

// Results is everything a run measured.
type Results struct {
	Sizes  Sizes         `json:"sizes"`
	CPUs   int           `json:"cpus"`
	Dspool string        `json:"dspool_version"`
	Client string        `json:"client"` // ssh -V
	Kex    string        `json:"kex_option,omitempty"`
	Cipher string        `json:"cipher"`
	Pipe   *openssh.Tput `json:"pipe"`      // the same bytes into a local `cat`
	TCP    *openssh.Tput `json:"tcp_h4_h2"` // the same bytes over TCP from h4 to h2, no ssh
	// Handshakes are new connections to dspool server from h1 (loopback)
	// and from h2, as an agent opens one per SSH session.
	Handshakes []*Handshakes `json:"handshakes"`
	Direct     *SSHTarget    `json:"openssh_direct"`
	Jump       *SSHTarget    `json:"openssh_jump"`
	Variants   []*Variant    `json:"dspool"` // node h2 over HTTPS, node h1 over HTTPS, node h1 over plain HTTP
	Load1      [3]float64    `json:"load1"`  // at the start, once everything runs, at the end
	Notes      []string      `json:"notes,omitempty"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works (well under a minute)")
	runs := flag.Int("runs", 0, "connect+exec samples per target (default 30, -short 5)")
	mib := flag.Int("mb", 0, "MiB per throughput transfer (default 1024, -short 32)")
	kex := flag.String("kex", "", "KexAlgorithms for every SSH target (default: the client's default list)")
	cipher := flag.String("cipher", aesGCM, "the cipher of every throughput transfer (ssh -c)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (data, logs, keys, configs)")
	flag.Parse()
	n := Sizes{Runs: 30, MiB: 1024, TputRuns: 5, Jobs: 50, CellS: 10, Slices: 5, Concurrency: []int{1, 16}}
	if *short {
		n = Sizes{Runs: 5, MiB: 32, TputRuns: 3, Jobs: 10, CellS: 1, Slices: 2, Concurrency: []int{1, 16}}
	}
	if *runs > 0 {
		n.Runs = *runs
	}
	if *mib > 0 {
		n.MiB = *mib
	}
	if flag.NArg() > 0 || *runs < 0 || *mib < 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// With stderr piped into e.g. head, a write to it must fail rather
	// than kill the program before it has cleaned up.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := run(ctx, n, *bin, *jsonOut, *kex, *cipher, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// skipped says why this machine cannot run the benchmark at all.
func skipped() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces, sshfs mounts, sshd, the accounts dspool's agents create)"
	}
	for _, c := range []string{"ip", "nsenter", "sshfs", "fusermount3", openssh.SSHD, openssh.Client, openssh.Keygen, "useradd"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Sprintf("needs %s (apt-get install iproute2 util-linux sshfs fuse3 openssh-server openssh-client passwd)", c)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "needs FUSE (/dev/fuse) for the share mounted over sshfs"
	}
	return ""
}

func run(ctx context.Context, n Sizes, bin, jsonOut, kex, cipher string, keep bool) error {
	if why := skipped(); why != "" {
		fmt.Println("bench/multihost: skipped:", why)
		return nil
	}
	r := &Results{Sizes: n, CPUs: runtime.NumCPU(), Kex: kex, Cipher: cipher}
	r.Load1[0] = host.Load1()
	p, err := host.Prepare(ctx, "dspool-multihost-bench-", bin, keep)
	if err != nil {
		return err
	}
	defer p.Done()
	r.Dspool, r.Client = p.Version, openssh.ClientVersion(ctx)
	c, err := startCluster(ctx, p.Dir, p.Bin, kex)
	if c != nil {
		defer c.stop()
	}
	if errors.Is(err, netns.ErrUnavailable) {
		fmt.Println("bench/multihost: skipped:", err)
		return nil
	}
	if err != nil {
		return err
	}
	r.Direct, r.Jump = c.direct, c.jump
	for _, v := range c.variants {
		r.Variants = append(r.Variants, &Variant{Key: v.key, Link: v.link, SSH: v.ssh, v: v})
	}
	r.Load1[1] = host.Load1()

	references(ctx, c, n, r)
	sshPhase(ctx, c, n, cipher, r)
	if err := jupyterAvailable(); err != nil {
		r.Notes = append(r.Notes, "jupyter: skipped: "+err.Error())
		host.Logf("jupyter: skipped: %v", err)
	} else {
		jupyterPhase(ctx, c, n, r.Variants)
	}
	jobsPhase(ctx, n, r.Variants)
	r.Load1[2] = host.Load1()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := report(os.Stdout, jsonOut, r); err != nil {
		return err
	}
	// A figure missing from dspool's side fails the run (CI runs this to
	// prove the path works); OpenSSH's may be missing.
	var errs []error
	for _, v := range r.Variants {
		for what, e := range map[string]string{"ssh": v.SSH.Error, "ssh throughput": tputErr(v.SSH), "jupyter": v.JupyterError, "jobs": v.JobsError} {
			if e != "" {
				errs = append(errs, fmt.Errorf("dspool %s, %s: %s", v.Key, what, e))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (logs in %s; keep them with -keep)", errors.Join(errs...), p.Dir)
	}
	return nil
}
