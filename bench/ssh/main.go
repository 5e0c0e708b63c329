// Command ssh measures the SSH path: connect+exec latency and bulk
// throughput through dspool's SSH gateway, and through a private OpenSSH
// sshd on this machine (directly and via a jump host), with the same client
// (/usr/bin/ssh) and the same options. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
)

// The users that log in: dspool's agents create dspool's with dspool's
// uid, and the OpenSSH peer needs its own (both run at once). dspool's is
// the first of dspoolbench, dspoolbench2, ... that no account has: another
// run's, with its own uid, would refuse this run's sessions.
var benchUser = freeAccount("dspoolbench")

const peerUser = "dspoolpeer"

func freeAccount(base string) string {
	name := base
	for i := 2; host.UserExists(name) && i < 100; i++ {
		name = base + strconv.Itoa(i)
	}
	return name
}

// ciphers are the ones throughput is measured with (ssh -c); "" is no -c:
// what the client and server negotiate by default, which is what users get.
var ciphers = []string{"", chacha20, aesGCM}

const (
	chacha20 = "chacha20-poly1305@openssh.com"
	aesGCM   = "aes128-gcm@openssh.com"
)

// Sizes are how much each measurement does.
type Sizes struct {
	Runs     int `json:"runs"`      // connect+exec samples per target
	MiB      int `json:"mib"`       // bytes per transfer, in MiB
	TputRuns int `json:"tput_runs"` // transfers per cipher and target; the median is reported
}

// Target is what was measured on one SSH server.
type Target struct {
	Name       string                   `json:"name"`
	Error      string                   `json:"error,omitempty"`  // why figures are missing
	Banner     string                   `json:"banner,omitempty"` // the server's identification string
	Kex        string                   `json:"kex,omitempty"`    // negotiated with the default options
	HostKey    string                   `json:"host_key,omitempty"`
	Cipher     string                   `json:"cipher,omitempty"` // the default cipher (client->server)
	Latency    *openssh.Latency         `json:"latency,omitempty"`
	Throughput map[string]*openssh.Tput `json:"throughput,omitempty"` // by cipher
	ServerCPU  map[string]*CPU          `json:"server_cpu,omitempty"` // by cipher, dspool's
	Binary     string                   `json:"binary,omitempty"`     // dspool's, when given
	Load1      [2]float64               `json:"load1"`                // before and after
}

// CPU is the cpu time of `dspool up` (its control plane, idle meanwhile,
// and its gateway; not its agents, processes of their own) during each
// transfer of one cipher.
type CPU struct {
	S      []float64 `json:"s"`       // seconds, each transfer
	PerGiB float64   `json:"per_gib"` // the median, per GiB
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	runs := flag.Int("runs", 0, "connect+exec samples per target (default 30, -short 5)")
	mib := flag.Int("mb", 0, "MiB per throughput transfer (default 1024, -short 64)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	noDspool := flag.Bool("no-dspool", false, "do not measure dspool's gateway")
	noApart := flag.Bool("no-apart", false, "do not measure `dspool gateway`, a gateway in a process of its own")
	noPeer := flag.Bool("no-peer", false, "do not measure OpenSSH (direct and jump host)")
	kex := flag.String("kex", "", "KexAlgorithms for every target (default: the client's default list)")
	keep := flag.Bool("keep", false, "keep the temporary directory (keys, sshd's config and log, dspool's data and log)")
	var compare []compared
	flag.Func("compare", "`LABEL=PATH`: also measure this dspool binary, its transfers taking turns with the others' (repeatable)", func(v string) error {
		label, path, ok := strings.Cut(v, "=")
		if !ok || label == "" || path == "" || strings.ContainsAny(label, "/ ") {
			return fmt.Errorf("want LABEL=PATH, a label without spaces or slashes")
		}
		compare = append(compare, compared{label, path})
		return nil
	})
	flag.Parse()
	n := Sizes{Runs: 30, MiB: 1024, TputRuns: 5}
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
	if *noDspool && len(compare) > 0 {
		fmt.Fprintln(os.Stderr, "bench: -compare measures dspool: not with -no-dspool")
		os.Exit(2)
	}
	if err := run(ctx, n, *bin, compare, *jsonOut, *kex, *noDspool, *noApart, *noPeer, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// compared is a dspool binary measured beside the one under test.
type compared struct{ label, bin string }

func run(ctx context.Context, n Sizes, bin string, compare []compared, jsonOut, kex string, noDspool, noApart, noPeer, keep bool) error {
	if _, err := os.Stat(openssh.Client); err != nil {
		return fmt.Errorf("no ssh client at %s: install it with `apt-get install -y openssh-client`", openssh.Client)
	}
	tmp, done, err := host.TempDir("dspool-ssh-bench-", keep)
	if err != nil {
		return err
	}
	defer done()
	key := filepath.Join(tmp, "client_ed25519")
	if err := openssh.MakeKey(ctx, key); err != nil {
		return err
	}
	client := openssh.Endpoint{Host: "127.0.0.1", Key: key, Kex: kex}
	r := &Results{Sizes: n, Client: openssh.ClientVersion(ctx), KexOption: kex, CPUs: runtime.NumCPU()}

	host.Logf("local pipe: %d x %d MiB through `cat >/dev/null`", n.TputRuns, n.MiB)
	r.Pipe = &openssh.Tput{}
	for range n.TputRuns {
		if r.Pipe.Add(openssh.Transfer(ctx, n.MiB, nil, "cat")); r.Pipe.Error != "" {
			break
		}
	}
	if r.Pipe.Error != "" {
		return fmt.Errorf("local pipe: %s", r.Pipe.Error)
	}
	r.Pipe.Finish(n.MiB)

	// Every target is started first, so that the transfers of each cipher
	// can take turns: this machine's throughput moves by a third between
	// one minute and the next, and a target measured in a slow minute
	// would carry it alone.
	var sides []*side
	var gws []*dspoolSide
	var apart *apartSide
	if noDspool {
		r.Notes = append(r.Notes, "dspool gateway: skipped (-no-dspool)")
	} else {
		gw := startDspool(ctx, "dspool gateway", bin, tmp, client)
		defer gw.stop()
		r.Dspool = gw.t
		gws = append(gws, gw)
		if !noApart {
			apart = startApart(ctx, gw, tmp)
			defer apart.stop()
			r.Compared = append(r.Compared, apart.t)
		}
	}
	for _, c := range compare {
		dir := filepath.Join(tmp, "dspool-"+c.label)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		gw := startDspool(ctx, "dspool "+c.label, c.bin, dir, client)
		defer gw.stop()
		r.Compared = append(r.Compared, gw.t)
		gws = append(gws, gw)
	}
	for _, gw := range gws {
		sides = append(sides, &gw.side)
	}
	if apart != nil {
		sides = append(sides, &apart.side)
	}
	if noPeer {
		r.Notes = append(r.Notes, "openssh: skipped (-no-peer)")
	} else {
		direct, jump, stop := startOpenSSH(ctx, tmp, client)
		defer stop()
		r.Direct, r.Jump = direct.t, jump.t
		sides = append(sides, direct, jump)
	}
	for _, s := range sides {
		if ctx.Err() == nil && s.t.Error == "" {
			login(ctx, s, n)
		}
	}
	// chacha20-poly1305 last: the gateway is restarted for it.
	for _, c := range []string{"", aesGCM, chacha20} {
		for _, gw := range gws {
			if c == chacha20 && gw.t.Error == "" {
				// The gateway offers chacha20-poly1305 only when configured
				// (AES-GCM costs it less, and OpenSSH picks chacha20 first
				// when offered): measure it with it enabled.
				gw.restart(ctx, "--ssh-ciphers", chacha20)
			}
		}
		if c == chacha20 && apart != nil && apart.t.Error == "" {
			apart.restart(ctx) // it takes the ciphers from the control plane
		}
		interleave(ctx, sides, c, n)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	for _, s := range sides {
		if s.t.Error != "" && s.log != "" {
			s.t.Error += fmt.Sprintf(" (%s; keep it with -keep)", s.log)
		}
	}
	if err := report(os.Stdout, jsonOut, r); err != nil {
		return err
	}
	// A figure missing from dspool's side is a failure of the run (CI runs
	// this to prove the path works); the peer may be absent.
	for _, d := range []*Target{r.Dspool, apart.target()} {
		if d == nil {
			continue
		}
		if d.Error != "" {
			return fmt.Errorf("%s: %s", d.Name, d.Error)
		}
		for c, tp := range d.Throughput {
			if tp.Error != "" {
				return fmt.Errorf("%s, %s: %s", d.Name, shortCipher(c), tp.Error)
			}
		}
	}
	return nil
}

// side is one target and how the client reaches it.
type side struct {
	t   *Target
	e   openssh.Endpoint
	log string // where the server's log is, for errors
	// cpu, when not nil, is the cpu-seconds the server has used so far.
	cpu func() float64
}

// dspoolSide is the gateway of a `dspool up`.
type dspoolSide struct {
	side
	bin, dir string
	up       *upProc
	// removeUser removes the account that dspool's agents create for the
	// bench user, once they are stopped, if it was not there before.
	removeUser bool
}

// startDspool builds dspool unless bin is given, starts `dspool up` with its
// SSH gateway in dir and lets the bench user in with the client's key.
// Failures end up in the target's Error.
func startDspool(ctx context.Context, name, bin, dir string, e openssh.Endpoint) *dspoolSide {
	e.User = benchUser
	d := &dspoolSide{side: side{t: &Target{Name: name, Binary: bin}, e: e}, bin: bin, dir: dir}
	d.cpu = func() float64 { return d.up.cpu() }
	if d.bin == "" {
		var err error
		if d.bin, err = host.BuildDspool(ctx, dir); err != nil {
			d.t.Error = err.Error()
			return d
		}
	}
	d.removeUser = !host.UserExists(benchUser)
	if d.restart(ctx); d.t.Error != "" {
		return d
	}
	for _, argv := range [][]string{{"user", "create", benchUser}, {"key", "add", "--user", benchUser, e.Key + ".pub"}} {
		if err := d.up.cli(ctx, argv...); err != nil {
			d.t.Error = err.Error()
			return d
		}
	}
	return d
}

// restart (re)starts `dspool up` on the same data with extra flags.
func (d *dspoolSide) restart(ctx context.Context, extra ...string) {
	if d.up != nil {
		d.up.stop()
		d.up = nil
	}
	up, err := startUp(ctx, d.bin, d.dir, extra...)
	if err != nil {
		d.t.Error = err.Error()
		return
	}
	d.up, d.e.Port, d.log = up, up.sshPort, "dspool's log: "+up.log
}

func (d *dspoolSide) stop() {
	if d.up != nil {
		d.up.stop()
	}
	if d.removeUser && host.UserExists(benchUser) {
		host.RemoveUser(benchUser)
	}
}

// startOpenSSH creates the peer's user if absent and starts the private
// sshd on 127.0.0.1, reached directly and through itself as a jump host. If
// it cannot start, both targets say why.
func startOpenSSH(ctx context.Context, dir string, e openssh.Endpoint) (direct, jump *side, stop func()) {
	e.User = peerUser
	direct = &side{t: &Target{Name: "openssh direct"}, e: e}
	jump = &side{t: &Target{Name: "openssh jump host"}, e: e}
	fail := func(err error) (*side, *side, func()) {
		direct.t.Error, jump.t.Error = err.Error(), "no sshd (see openssh direct)"
		return direct, jump, func() {}
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("the OpenSSH peer needs root: it creates a user and runs sshd"))
	}
	port, err := host.FreePort()
	if err != nil {
		return fail(err)
	}
	removeUser, err := openssh.PeerUser(ctx, peerUser)
	if err != nil {
		return fail(err)
	}
	p, err := openssh.StartServer(ctx, openssh.ServerConfig{Dir: filepath.Join(dir, "openssh"), Listen: fmt.Sprintf("127.0.0.1:%d", port),
		User: peerUser, AuthorizedKey: e.Key + ".pub"})
	if err != nil {
		removeUser()
		return fail(err)
	}
	direct.e.Port, jump.e.Port = port, port
	hop := direct.e
	jump.e.Jump = &hop
	direct.log, jump.log = "sshd's log: "+p.Log, "sshd's log: "+p.Log
	return direct, jump, func() { p.Stop(); removeUser() }
}

// login checks that the target lets the client in, records what the default
// options negotiate, and measures connect+exec.
func login(ctx context.Context, s *side, n Sizes) {
	t := s.t
	t.Load1[0] = host.Load1()
	defer func() { t.Load1[1] = host.Load1() }()
	t.Banner = openssh.Banner(ctx, fmt.Sprintf("127.0.0.1:%d", s.e.Port), nil)
	// One untimed login, verbose: it checks that the key is accepted and
	// tells what the default options negotiate.
	neg, err := s.e.Probe(ctx)
	if err != nil {
		t.Error = "first login: " + err.Error()
		return
	}
	t.Kex, t.HostKey, t.Cipher = neg.Kex, neg.HostKey, neg.Cipher
	host.Logf("%s: %s, kex %s, host key %s, cipher %s", t.Name, t.Banner, t.Kex, t.HostKey, t.Cipher)
	host.Logf("%s: %d x `ssh ... true`", t.Name, n.Runs)
	lat := &openssh.Latency{}
	for i := range n.Runs {
		d, err := s.e.ConnectExec(ctx)
		if err != nil {
			t.Error = fmt.Sprintf("connect+exec, run %d: %v", i+1, err)
			return
		}
		lat.Add(d)
	}
	t.Latency = lat
	host.Logf("%s: connect+exec min %.1f p50 %.1f p90 %.1f max %.1f ms", t.Name, lat.MinMs, lat.P50Ms, lat.P90Ms, lat.MaxMs)
}

// interleave measures the throughput of one cipher on every target that
// works, n.TputRuns rounds of one transfer each, the targets taking turns.
func interleave(ctx context.Context, sides []*side, cipher string, n Sizes) {
	var live []*side
	for _, s := range sides {
		if s.t.Error == "" {
			if s.t.Throughput == nil {
				s.t.Throughput = map[string]*openssh.Tput{}
			}
			s.t.Throughput[cipher] = &openssh.Tput{}
			if s.cpu != nil {
				if s.t.ServerCPU == nil {
					s.t.ServerCPU = map[string]*CPU{}
				}
				s.t.ServerCPU[cipher] = &CPU{}
			}
			live = append(live, s)
		}
	}
	flag := ""
	if cipher != "" {
		flag = "-c " + cipher + " "
	}
	host.Logf("%d x %d MiB through `ssh %s... 'cat >/dev/null'` on %d targets in turn", n.TputRuns, n.MiB, flag, len(live))
	for range n.TputRuns {
		for _, s := range live {
			if tp := s.t.Throughput[cipher]; tp.Error == "" && ctx.Err() == nil {
				var cpu0 float64
				if s.cpu != nil {
					cpu0 = s.cpu()
				}
				if tp.Add(s.e.Transfer(ctx, n.MiB, cipher, "cat >/dev/null")); s.cpu != nil && tp.Error == "" {
					c := s.t.ServerCPU[cipher]
					c.S = append(c.S, s.cpu()-cpu0)
				}
			}
		}
	}
	for _, s := range live {
		tp := s.t.Throughput[cipher]
		if tp.Error != "" {
			host.Logf("%s: %s: %s", s.t.Name, shortCipher(cipher), tp.Error)
			continue
		}
		tp.Finish(n.MiB)
		cpu := ""
		if c := s.t.ServerCPU[cipher]; c != nil && len(c.S) > 0 {
			c.PerGiB = host.Pct(slices.Sorted(slices.Values(c.S)), 50) * 1024 / float64(n.MiB)
			cpu = fmt.Sprintf(", server %.2f cpu-s/GiB", c.PerGiB)
		}
		host.Logf("%s: %s: %.0f MiB/s (%s%s)", s.t.Name, shortCipher(cipher), tp.MiBPerS, tp.Spread(n.MiB), cpu)
	}
}

// Results is everything a run measured.
type Results struct {
	Sizes     Sizes         `json:"sizes"`
	Client    string        `json:"client"`               // ssh -V
	KexOption string        `json:"kex_option,omitempty"` // -kex
	CPUs      int           `json:"cpus"`
	Pipe      *openssh.Tput `json:"pipe"` // the same bytes through a local `cat`, no ssh
	Dspool    *Target       `json:"dspool,omitempty"`
	Compared  []*Target     `json:"dspool_compared,omitempty"` // -compare
	Direct    *Target       `json:"openssh_direct,omitempty"`
	Jump      *Target       `json:"openssh_jump,omitempty"`
	Notes     []string      `json:"notes,omitempty"`
}
