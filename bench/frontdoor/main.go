// Command frontdoor measures dspool's front doors under the floods they
// must survive, with the real binary under `dspool up`: an SSH login
// (connect and authenticate) from a fresh address, idle and while 20
// addresses hold the gateway's unauthenticated slots, and GET /healthz
// (a new connection each) idle and while one address holds thousands of
// connections to the API. See bench/README.md.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"golang.org/x/crypto/ssh"
)

const (
	benchAdmin = "dspoolfront" // the admin `dspool up` creates; it logs in over SSH
	// uidOffset keeps this benchmark's uids apart from the other
	// benchmarks' (bench/access uses +100).
	uidOffset = 150
	// sshHolders and holderConns: the SSH attack (20 addresses, each trying
	// to hold more than its share).
	sshHolders  = 20
	holderConns = 20
	// abandoners are the clients that keep asking for a FIFO's log and
	// walking away.
	abandoners = 16
)

// Sizes are how much each measurement does.
type Sizes struct {
	Logins  int `json:"ssh_logins"`     // per phase
	Healthz int `json:"healthz"`        // requests per phase
	Conns   int `json:"api_conns"`      // the one address's connections to the API
	Holders int `json:"ssh_holders"`    // addresses holding SSH slots
	PerHold int `json:"ssh_per_holder"` // connections each tries to hold
}

// Result is everything a run measured.
type Result struct {
	Sizes       Sizes  `json:"sizes"`
	CPUs        int    `json:"cpus"`
	Version     string `json:"version,omitempty"`
	SSHIdle     *Dist  `json:"ssh_idle"`
	SSHAttacked *Dist  `json:"ssh_attacked"`
	SSHFailed   int    `json:"ssh_attacked_failed"`
	SSHHeld     int    `json:"ssh_slots_held"` // by the holders, when measured
	HTTPIdle    *Dist  `json:"healthz_idle"`
	HTTPLoaded  *Dist  `json:"healthz_attacked"`
	HTTPFailed  int    `json:"healthz_attacked_failed"`
	HTTPHeld    int    `json:"api_conns_held"` // by the one address, when measured
	// LogsAbandoned are the requests for a FIFO's log sent and abandoned
	// while /healthz was measured under attack.
	LogsAbandoned int64   `json:"logs_abandoned"`
	Warnings      int     `json:"refusal_warnings"`
	Load1Before   float64 `json:"load1_before"`
	Load1After    float64 `json:"load1_after"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	conns := flag.Int("conns", 5000, "connections the one address opens to the API")
	logins := flag.Int("logins", 0, "SSH logins timed per phase (default 50; 8 with -short)")
	requests := flag.Int("requests", 0, "GET /healthz timed per phase (default 500; 50 with -short)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and its log up.log)")
	flag.Parse()
	n := Sizes{Logins: 50, Healthz: 500, Conns: *conns, Holders: sshHolders, PerHold: holderConns}
	if *short {
		n.Logins, n.Healthz = 8, 50
	}
	if *logins > 0 {
		n.Logins = *logins
	}
	if *requests > 0 {
		n.Healthz = *requests
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *bin, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut string, keep bool) error {
	if err := host.RaiseFileLimit(n.Conns + 1000); err != nil {
		return fmt.Errorf("%w (run as root, or pass a smaller -conns)", err)
	}
	r := &Result{Sizes: n, CPUs: runtime.NumCPU(), Load1Before: host.Load1()}
	pr, err := host.Prepare(ctx, "dspool-bench-frontdoor-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	r.Version = pr.Version
	if err := measure(ctx, r, pr.Bin, pr.Dir); err != nil {
		return err
	}
	r.Load1After = host.Load1()
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

// measure starts `dspool up` with the gateway and runs both measurements.
func measure(ctx context.Context, r *Result, bin, dir string) error {
	sshPort, err := host.FreePort()
	if err != nil {
		return err
	}
	up, err := host.StartUp(ctx, bin, dir, []string{"--data", filepath.Join(dir, "data"), "--share", filepath.Join(dir, "share"), "--listen", "127.0.0.1:0",
		"--ssh-listen", "127.0.0.1:" + strconv.Itoa(sshPort), "--nodes", "0", "--admin", benchAdmin,
		"--uid-base", strconv.Itoa(host.UIDBase() + uidOffset)}, func(*api.Client) bool { return host.Listening(sshPort) })
	if err != nil {
		return err
	}
	defer up.Stop()
	host.Logf("dspool up at %s, its gateway at 127.0.0.1:%d", up.Client.Server, sshPort)
	fail := func(what string, err error) error {
		return fmt.Errorf("%s: %w (dspool's log: %s; keep it with -keep)", what, err, up.Log)
	}
	key, err := addKey(ctx, up, dir)
	if err != nil {
		return fail("add a key", err)
	}
	if err := benchSSH(ctx, r, "127.0.0.1:"+strconv.Itoa(sshPort), key); err != nil {
		return fail("ssh", err)
	}
	if err := benchHealthz(ctx, r, up, filepath.Join(dir, "share")); err != nil {
		return fail("healthz", err)
	}
	if b, err := os.ReadFile(up.Log); err == nil {
		// The SSH gateway's warning, and the API's.
		r.Warnings = strings.Count(string(b), "too many unauthenticated connections") +
			strings.Count(string(b), "too many connections from one address")
	}
	return nil
}

// addKey gives the admin a new SSH key and returns it.
func addKey(ctx context.Context, up *host.Up, dir string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	pub := filepath.Join(dir, "bench_ed25519.pub")
	if err := os.WriteFile(pub, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		return nil, err
	}
	_, err = up.Output(ctx, nil, "key", "add", "--user", benchAdmin, pub)
	return signer, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
