// Command ssh measures the SSH path: connect+exec latency and bulk
// throughput through dspool's SSH gateway, and through a private OpenSSH
// sshd on this machine (directly and via a jump host), with the same client
// (/usr/bin/ssh) and the same options. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

const (
	sshClient = "/usr/bin/ssh"
	sshKeygen = "/usr/bin/ssh-keygen"
	benchUser = "dspoolbench" // the user that logs in, on every target
)

// ciphers are the ones throughput is measured with (ssh -c); "" is no -c:
// what the client and server negotiate by default, which is what users get.
var ciphers = []string{"", chacha20, "aes128-gcm@openssh.com"}

const chacha20 = "chacha20-poly1305@openssh.com"

// Sizes are how much each measurement does.
type Sizes struct {
	Runs     int `json:"runs"`      // connect+exec samples per target
	MiB      int `json:"mib"`       // bytes per transfer, in MiB
	TputRuns int `json:"tput_runs"` // transfers per cipher and target; the median is reported
}

// Target is what was measured on one SSH server.
type Target struct {
	Name       string           `json:"name"`
	Error      string           `json:"error,omitempty"`  // why figures are missing
	Banner     string           `json:"banner,omitempty"` // the server's identification string
	Kex        string           `json:"kex,omitempty"`    // negotiated with the default options
	HostKey    string           `json:"host_key,omitempty"`
	Cipher     string           `json:"cipher,omitempty"` // the default cipher (client->server)
	Latency    *Latency         `json:"latency,omitempty"`
	Throughput map[string]*Tput `json:"throughput,omitempty"` // by cipher
	Load1      [2]float64       `json:"load1"`                // before and after
}

// Latency is `ssh ... true`, each a fresh connection.
type Latency struct {
	SamplesMs []float64 `json:"samples_ms"`
	P50Ms     float64   `json:"p50_ms"`
	P90Ms     float64   `json:"p90_ms"`
	MinMs     float64   `json:"min_ms"`
	MaxMs     float64   `json:"max_ms"`
}

// Tput is the throughput of `ssh ... 'cat >/dev/null'` for one cipher.
type Tput struct {
	MiBPerS     float64   `json:"mib_per_s"`      // MiB / the median of DataS
	WallMiBPerS float64   `json:"wall_mib_per_s"` // MiB / the median of WallS
	DataS       []float64 `json:"data_s"`         // each transfer: from its first write's return to ssh's exit
	WallS       []float64 `json:"wall_s"`         // each transfer: from starting ssh to its exit (includes the connection)
	Error       string    `json:"error,omitempty"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	runs := flag.Int("runs", 0, "connect+exec samples per target (default 30, -short 5)")
	mib := flag.Int("mb", 0, "MiB per throughput transfer (default 1024, -short 64)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	noDspool := flag.Bool("no-dspool", false, "do not measure dspool's gateway")
	noPeer := flag.Bool("no-peer", false, "do not measure OpenSSH (direct and jump host)")
	kex := flag.String("kex", "", "KexAlgorithms for every target (default: the client's default list)")
	keep := flag.Bool("keep", false, "keep the temporary directory (keys, sshd's config and log, dspool's data and log)")
	flag.Parse()
	n := Sizes{Runs: 30, MiB: 1024, TputRuns: 3}
	if *short {
		n.Runs, n.MiB = 5, 64
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
	// than kill the program before it has stopped sshd and removed the user.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := run(ctx, n, *bin, *jsonOut, *kex, *noDspool, *noPeer, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut, kex string, noDspool, noPeer, keep bool) error {
	if _, err := os.Stat(sshClient); err != nil {
		return fmt.Errorf("no ssh client at %s: install it with `apt-get install -y openssh-client`", sshClient)
	}
	tmp, done, err := host.TempDir("dspool-ssh-bench-", keep)
	if err != nil {
		return err
	}
	defer done()
	key := filepath.Join(tmp, "client_ed25519")
	if err := keygen(ctx, key); err != nil {
		return err
	}
	client := endpoint{key: key, kex: kex}
	r := &Results{Sizes: n, Client: clientVersion(ctx), KexOption: kex, CPUs: runtime.NumCPU()}

	host.Logf("local pipe: %d x %d MiB through `cat >/dev/null`", n.TputRuns, n.MiB)
	r.Pipe = throughput(ctx, n, "cat", nil)
	if r.Pipe.Error != "" {
		return fmt.Errorf("local pipe: %s", r.Pipe.Error)
	}

	if noDspool {
		r.Notes = append(r.Notes, "dspool gateway: skipped (-no-dspool)")
	} else {
		r.Dspool = benchDspool(ctx, bin, tmp, client, n)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if noPeer {
		r.Notes = append(r.Notes, "openssh: skipped (-no-peer)")
	} else {
		r.Direct, r.Jump = benchOpenSSH(ctx, tmp, client, n)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := report(os.Stdout, jsonOut, r); err != nil {
		return err
	}
	// A figure missing from dspool's side is a failure of the run (CI runs
	// this to prove the path works); the peer may be absent.
	if d := r.Dspool; d != nil {
		if d.Error != "" {
			return fmt.Errorf("dspool gateway: %s", d.Error)
		}
		for c, tp := range d.Throughput {
			if tp.Error != "" {
				return fmt.Errorf("dspool gateway, %s: %s", shortCipher(c), tp.Error)
			}
		}
	}
	return nil
}

// benchDspool builds dspool unless bin is given, starts `dspool up` with
// its SSH gateway, lets the bench user in with the client's key and
// measures the gateway. Failures end up in the target's Error.
func benchDspool(ctx context.Context, bin, dir string, e endpoint, n Sizes) *Target {
	t := &Target{Name: "dspool gateway"}
	if bin == "" {
		var err error
		if bin, err = host.BuildDspool(ctx, dir); err != nil {
			t.Error = err.Error()
			return t
		}
	}
	// dspool's agents create the account of the user a session runs as,
	// and leave it: remove it once they are stopped, if it is new.
	if host.UserExists(benchUser) {
		host.Logf("dspool: the account %s exists already (and stays): dspool's sessions need it to have dspool's uid", benchUser)
	} else {
		defer func() {
			if host.UserExists(benchUser) {
				host.RemoveUser(benchUser)
			}
		}()
	}
	up, err := startUp(ctx, bin, dir)
	if err != nil {
		t.Error = err.Error()
		return t
	}
	defer func() {
		if up != nil {
			up.stop()
		}
	}()
	for _, argv := range [][]string{{"user", "create", benchUser}, {"key", "add", "--user", benchUser, e.key + ".pub"}} {
		if err := up.cli(ctx, argv...); err != nil {
			t.Error = err.Error()
			return t
		}
	}
	e.port = up.sshPort
	measure(ctx, t, e, n)
	if t.Error != "" {
		t.Error += fmt.Sprintf(" (dspool's log: %s; keep it with -keep)", up.log)
		return t
	}
	// The gateway offers chacha20-poly1305 only when configured (it is
	// slow in Go on amd64, and OpenSSH picks it first when offered): measure
	// it on the same data with it enabled.
	up.stop()
	up, err = startUp(ctx, bin, dir, "--ssh-ciphers", chacha20)
	if err != nil {
		t.Throughput[chacha20] = &Tput{Error: err.Error()}
		return t
	}
	e.port = up.sshPort
	host.Logf("%s: %d x %d MiB through `ssh -c %s ... 'cat >/dev/null'`, with --ssh-ciphers %s", t.Name, n.TputRuns, n.MiB, chacha20, chacha20)
	tp := throughput(ctx, n, sshClient, e.args("ERROR", chacha20, "cat >/dev/null"))
	t.Throughput[chacha20] = tp
	host.Logf("%s: %s: %.0f MiB/s %s", t.Name, chacha20, tp.MiBPerS, tp.Error)
	return t
}

// benchOpenSSH starts the private sshd and measures it directly and through
// itself as a jump host. If it cannot start, both targets say why.
func benchOpenSSH(ctx context.Context, dir string, e endpoint, n Sizes) (direct, jump *Target) {
	direct, jump = &Target{Name: "openssh direct"}, &Target{Name: "openssh jump host"}
	p, err := startSSHD(ctx, filepath.Join(dir, "openssh"), e.key+".pub")
	if err != nil {
		direct.Error, jump.Error = err.Error(), "no sshd (see openssh direct)"
		return direct, jump
	}
	defer p.stop()
	e.port = p.port
	measure(ctx, direct, e, n)
	e.jump = true
	measure(ctx, jump, e, n)
	for _, t := range []*Target{direct, jump} {
		if t.Error != "" {
			t.Error += fmt.Sprintf(" (sshd's log: %s; keep it with -keep)", p.log)
		}
	}
	return direct, jump
}

// measure runs every measurement against one target and records them in t.
func measure(ctx context.Context, t *Target, e endpoint, n Sizes) {
	t.Load1[0] = host.Load1()
	defer func() { t.Load1[1] = host.Load1() }()
	t.Banner = banner(e.port)
	// One untimed login, verbose: it checks that the key is accepted and
	// tells what the default options negotiate.
	if err := probe(ctx, t, e); err != nil {
		t.Error = "first login: " + err.Error()
		return
	}
	host.Logf("%s: %s, kex %s, host key %s, cipher %s", t.Name, t.Banner, t.Kex, t.HostKey, t.Cipher)

	host.Logf("%s: %d x `ssh ... true`", t.Name, n.Runs)
	lat, err := latency(ctx, e, n.Runs)
	if err != nil {
		t.Error = "connect+exec: " + err.Error()
	} else {
		t.Latency = lat
		host.Logf("%s: connect+exec min %.1f p50 %.1f p90 %.1f max %.1f ms", t.Name, lat.MinMs, lat.P50Ms, lat.P90Ms, lat.MaxMs)
	}
	t.Throughput = map[string]*Tput{}
	for _, c := range ciphers {
		if ctx.Err() != nil {
			return
		}
		flag := "-c " + c + " "
		if c == "" {
			flag = ""
		}
		host.Logf("%s: %d x %d MiB through `ssh %s... 'cat >/dev/null'`", t.Name, n.TputRuns, n.MiB, flag)
		tp := throughput(ctx, n, sshClient, e.args("ERROR", c, "cat >/dev/null"))
		t.Throughput[c] = tp
		if tp.Error != "" {
			host.Logf("%s: %s: %s", t.Name, shortCipher(c), tp.Error)
		} else {
			host.Logf("%s: %s: %.0f MiB/s", t.Name, shortCipher(c), tp.MiBPerS)
		}
	}
}

// Results is everything a run measured.
type Results struct {
	Sizes     Sizes    `json:"sizes"`
	Client    string   `json:"client"`               // ssh -V
	KexOption string   `json:"kex_option,omitempty"` // -kex
	CPUs      int      `json:"cpus"`
	Pipe      *Tput    `json:"pipe"` // the same bytes through a local `cat`, no ssh
	Dspool    *Target  `json:"dspool,omitempty"`
	Direct    *Target  `json:"openssh_direct,omitempty"`
	Jump      *Target  `json:"openssh_jump,omitempty"`
	Notes     []string `json:"notes,omitempty"`
}

// keygen writes a new ed25519 key pair without passphrase to path and path.pub.
func keygen(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", benchUser, "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, host.Tail(out, 3))
	}
	return nil
}

func clientVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, sshClient, "-V").CombinedOutput()
	return strings.TrimSpace(string(out))
}
