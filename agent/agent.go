// Package agent is dspool's node agent. It joins a pool with a join token,
// dials out to the control plane over one authenticated, multiplexed
// connection, heartbeats its inventory and attempts, runs the setup script,
// and runs each job attempt as its user in a cgroup, with output on the share.
//
// The agent keeps its attempts running when the server is unreachable and
// reconnects; it never decides on its own that a job should run: it only
// starts what the server placed on it, at most once per attempt.
package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/backoff"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/tlsca"
	"github.com/hashicorp/yamux"
)

// Config configures an agent. Zero values mean the defaults.
type Config struct {
	Server string // control plane URL
	// ServerCA is a PEM file of certificates to trust for an https Server
	// beyond the system's (a private CA, or the server's own certificate).
	ServerCA  string
	JoinToken string // needed only the first time (no credential in StateDir)
	Pool      string // optional check that the join token is for this pool
	Name      string // node name; default the hostname
	// StateDir keeps the node's identity and credential (mode 0600).
	StateDir string
	// StateLock is the lock of StateDir that the process which started
	// the agent took for it and handed over (agentlock.Inherited), or nil:
	// the agent then takes it itself.
	StateLock *os.File
	// Share is where this machine mounts the share.
	Share string
	// Inventory overrides; zero means detect.
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	// GPUs: -1 offers those nvidia-smi finds; N >= 0 offers N, the first
	// N that nvidia-smi finds when it finds any, else N without a model.
	GPUs int
	// DevDir holds the GPUs' device nodes (nvidiaN; default /dev), which
	// the devices cgroup denies to work that does not hold them.
	DevDir string
	Labels map[string]string
	// EtcDir holds the account files (passwd, group) whose accounts the
	// agent reports; default /etc (tests give others).
	EtcDir string
	// PidsLimit bounds the processes of one attempt (default 4096).
	PidsLimit int
	// FramedSessions carries the stdin and stdout of session processes in
	// frames on the agent's one connection, instead of a connection of
	// their own per process (for networks that allow an agent only one).
	FramedSessions bool
	// RuntimeDir holds, under a directory per node, the private files of
	// attempts and sessions (their secrets); never on the share. Default
	// /run/dspool as root, else $XDG_RUNTIME_DIR/dspool, else
	// StateDir/run.
	RuntimeDir string
	// SFTPServer is the command line of the sftp subsystem of sessions,
	// run as the user (dspool's own: DSPOOL sftp-server); empty: no sftp.
	SFTPServer []string
	// StayOnStop keeps the node in its pool when the agent stops (it is
	// lost after the server's grace, and resumes when the agent starts
	// again): for `dspool up`, whose pool comes back at its next start.
	// By default a stopping agent tells the server, and its node leaves
	// at once.
	StayOnStop bool
	// Watchdog is the command line of the node's watchdog, which kills the
	// node's attempts when the agent dies or is cut off and cannot do it
	// itself (dspool's own: DSPOOL watchdog); empty: none, and the
	// attempts' children may outlive a killed agent.
	Watchdog []string
	Logger   *slog.Logger
	Version  string
}

// Agent is a running node agent.
type Agent struct {
	// term is the highest term of a leading control plane this agent has
	// been answered by (api.LeaderTermHeader).
	term     atomic.Int64
	cfg      Config
	log      *slog.Logger
	root     bool
	boot     string
	node     string
	nodeName string
	cred     string
	inv      dspool.Inventory
	cgroups  *cgroups
	accounts accounts
	reporter accountReporter
	runtime  string         // this node's runtime directory ("" when it could not be made)
	gpuDevs  map[int]devNum // each GPU's device node, by index (absent: none found)
	gpuUse   gpuUse
	caFile   string  // the server's CA for work, in runtime ("": work needs none)
	podman   *podman // nil: no attempt in an image runs here (inv.ImagesWhy says why)

	mu       sync.Mutex
	attempts map[api.AttemptRef]*attempt
	state    dspool.NodeState
	message  string
	setupRan bool
	dirty    chan struct{}

	tls  *tls.Config  // for an https server
	http *http.Client // for API calls (registration)
	// pin is the CA pin the agent trusts ("": the system's roots or
	// --server-ca); pinned receives the CA a first contact verified.
	pin    string
	pinned pinnedCA
	// shareID is the id of the share's marker when the node joined: a
	// share that later holds another, or none, was unmounted or replaced.
	shareID string
	share   shareWatch

	smu      sync.Mutex
	sessions map[string]*hosted
	sftpExe  *os.File // the sftp subsystem's program, opened at start

	lock *os.File // held for the agent's life

	fence fence     // the last contact with the control plane
	wd    *watchdog // nil without one
}

type identity struct {
	Node       string `json:"node"`
	Name       string `json:"name"`
	Pool       string `json:"pool"`
	Server     string `json:"server"`
	Credential string `json:"credential"`
	// CA is the control plane's CA (PEM) that the join token's pin
	// verified at the first contact: later connections trust it alone.
	CA string `json:"ca,omitempty"`
	// ShareID is the id of the share's marker when the node joined.
	ShareID string `json:"share_id,omitempty"`
}

// New prepares an agent: it finds its inventory and cgroups, and loads its
// identity from StateDir when it has one.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Server == "" {
		return nil, errors.New("no server: give --server URL")
	}
	if cfg.Share == "" {
		return nil, errors.New("no share: give --share DIR, where this machine mounts the pool's share")
	}
	if st, err := os.Stat(cfg.Share); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("share %s is not a directory: mount the pool's share there first", cfg.Share)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("no state directory: give --state DIR")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.PidsLimit == 0 {
		cfg.PidsLimit = 4096
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	ag := &Agent{cfg: cfg, log: cfg.Logger, root: os.Geteuid() == 0, boot: hex.EncodeToString(b),
		attempts: map[api.AttemptRef]*attempt{}, sessions: map[string]*hosted{}, state: dspool.NodeProvisioning, dirty: make(chan struct{}, 1),
		accounts: accounts{done: map[string]bool{}}, reporter: accountReporter{etc: cfg.EtcDir}}
	ag.share = shareWatch{look: ag.lookAtShare, now: time.Now}
	ag.inv = dspool.Inventory{CPUs: cfg.CPUs, Memory: cfg.Memory}
	if ag.inv.CPUs == 0 {
		ag.inv.CPUs = NumCPU()
	}
	if ag.inv.Memory == 0 {
		ag.inv.Memory = MemTotal()
	}
	if cfg.GPUs != 0 {
		ag.inv.GPUs = DetectGPUs(ctx)
	}
	if cfg.GPUs >= 0 && len(ag.inv.GPUs) > cfg.GPUs {
		ag.inv.GPUs = ag.inv.GPUs[:cfg.GPUs]
	}
	if cfg.GPUs >= 0 && len(ag.inv.GPUs) == 0 {
		for i := 0; i < cfg.GPUs; i++ {
			ag.inv.GPUs = append(ag.inv.GPUs, dspool.GPU{Index: i, Name: "declared"})
		}
	}
	if ag.inv.GPUs == nil {
		ag.inv.GPUs = []dspool.GPU{}
	}
	if ag.cfg.DevDir == "" {
		ag.cfg.DevDir = "/dev"
	}
	ag.gpuDevs = findGPUDevices(ag.cfg.DevDir, ag.inv.GPUs)
	if len(cfg.SFTPServer) > 0 {
		f, err := os.Open(cfg.SFTPServer[0])
		if err != nil {
			return nil, fmt.Errorf("sftp server: %w", err)
		}
		ag.sftpExe = f
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := lockState(cfg.StateDir, cfg.StateLock)
	if err != nil {
		return nil, err
	}
	ag.lock = lock
	pinned := ""
	if b, err := os.ReadFile(ag.identityPath()); err == nil {
		var id identity
		if err := json.Unmarshal(b, &id); err != nil {
			return nil, fmt.Errorf("read %s: %w (remove it to join again)", ag.identityPath(), err)
		}
		ag.node, ag.nodeName, ag.cred, ag.shareID = id.Node, id.Name, id.Credential, id.ShareID
		pinned = id.CA
	}
	if err := ag.trust(pinned); err != nil {
		lock.Close()
		return nil, err
	}
	for _, a := range ag.startedBefore() {
		ag.log.Warn("an attempt the last agent of this node started ended with it", "job", a.spec.Job, "attempt", a.spec.Attempt)
		ag.attempts[a.spec.AttemptRef] = a
	}
	return ag, nil
}

// writable reports whether this process may create a file in dir.
func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".dspool-write-check-*")
	if err != nil {
		return false
	}
	f.Close()
	return os.Remove(f.Name()) == nil
}

func (ag *Agent) identityPath() string { return filepath.Join(ag.cfg.StateDir, "node.json") }

// Node returns the node id (after registration).
func (ag *Agent) Node() string { return ag.node }

func (ag *Agent) client() *api.Client { return &api.Client{Server: ag.cfg.Server, HTTP: ag.http} }

// register joins the pool once; the credential is kept in StateDir.
func (ag *Agent) register(ctx context.Context) error {
	if ag.cred != "" {
		return nil
	}
	if ag.cfg.JoinToken == "" {
		return errors.New("this node has not joined a pool yet: give --join-token (print one with `dspool pool join-token POOL`)")
	}
	shareID, err := share.ReadID(ag.cfg.Share)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("share %s: %w", ag.cfg.Share, err)
	}
	req := api.RegisterRequest{Pool: ag.cfg.Pool,
		Name: ag.cfg.Name, Inventory: ag.inv, Labels: ag.cfg.Labels, Version: ag.cfg.Version, ShareID: shareID}
	switch {
	case shareID != "" && ag.root:
		mode, err := share.Probe(ag.cfg.Share)
		req.ShareMode, req.ShareWritable = string(mode), err == nil
		if err != nil {
			req.ShareProblem = err.Error()
		}
		ag.log.Info("share checked", "share", ag.cfg.Share, "mode", mode, "problem", req.ShareProblem)
	case shareID != "":
		// Not root: all work here runs as this agent's own user, whose
		// files are all its own; the share need only take them.
		req.ShareWritable = writable(ag.cfg.Share)
	}
	// Machines made together from one model (a scale set's custom data)
	// are given the tokens of their growth, comma-separated: each joins
	// with the first one not spent yet.
	var resp *api.RegisterResponse
	for _, tok := range strings.Split(ag.cfg.JoinToken, ",") {
		req.JoinToken = strings.TrimSpace(tok)
		if resp, err = ag.client().Register(ctx, req); dspool.ErrorCode(err) != dspool.EUnauthorized {
			break
		}
	}
	if err != nil {
		if dspool.ErrorCode(err) == dspool.EInvalid {
			var e *dspool.Error
			if errors.As(err, &e) && strings.HasPrefix(e.Field, "share") {
				return fmt.Errorf("join pool: share %s: %w", ag.cfg.Share, err)
			}
		}
		return fmt.Errorf("join pool: %w", ag.explainTLS(err))
	}
	if err := ag.saveIdentity(identity{Node: resp.Node, Name: resp.Name, Pool: resp.Pool, Server: ag.cfg.Server, Credential: resp.Credential,
		CA: ag.pinned.pem(), ShareID: shareID}); err != nil {
		return err
	}
	ag.node, ag.nodeName, ag.cred, ag.shareID = resp.Node, resp.Name, resp.Credential, shareID
	ag.log.Info("joined pool", "pool", resp.Pool, "node", resp.Node, "name", resp.Name)
	return nil
}

// Run registers if needed and keeps the connection to the server up until
// ctx ends; then it stops every attempt (SIGTERM, then SIGKILL).
func (ag *Agent) Run(ctx context.Context) error {
	// Retries are spread (full jitter): the agents of a whole fleet that
	// failed together must not come back in lockstep.
	var retry backoff.Backoff
	for {
		err := ag.register(ctx)
		if err == nil {
			break
		}
		if c := dspool.ErrorCode(errors.Unwrap(err)); c == dspool.EUnauthorized || c == dspool.EInvalid || ag.cfg.JoinToken == "" || errors.Is(err, tlsca.ErrPin) || errors.Is(err, tlsca.ErrName) {
			return err
		}
		wait := retry.Next()
		ag.log.Warn("register", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
	if err := ag.rotateCredential(ctx); err != nil {
		if dspool.ErrorCode(errors.Unwrap(err)) == dspool.EUnauthorized {
			return err
		}
		ag.log.Warn("keeping the node's credential", "err", err)
	}
	// The API calls are done. A connection kept for more would hold one
	// of its address's connections at the server for minutes, and the
	// agents of a pool behind one address (a NAT, `dspool up`'s) would
	// fill the address's limit and turn each other away as they join.
	ag.http.CloseIdleConnections()
	if ag.root {
		cg, err := detectCgroups(ag.node)
		if err != nil {
			ag.log.Warn("no cgroups: jobs run without cpu/memory/pids limits", "err", err)
		} else {
			cg.cleanup()
			ag.cgroups = cg
			if err := cg.capHost(); err != nil {
				ag.log.Warn("all dspool work on this machine is not capped below its memory and process ids", "err", err)
			}
		}
	}
	ag.warnGPUIsolation()
	if err := ag.prepareRuntime(); err != nil {
		ag.runtime = ""
		ag.log.Error("no runtime directory: work that asks for secrets in files cannot start here", "err", err)
	}
	if p, why := ag.detectPodman(ctx); p != nil {
		ag.mu.Lock()
		ag.podman, ag.inv.Podman = p, p.version
		ag.mu.Unlock()
		// In the background: what is left is dead, and no work of this run
		// has its names (attempt numbers and sessions are new).
		go ag.removeStaleContainers(ctx, p)
	} else {
		ag.mu.Lock()
		ag.inv.ImagesWhy = why
		ag.mu.Unlock()
	}
	if err := ag.publishCA(); err != nil {
		ag.log.Warn("work here gets no DSPOOL_CA: the API client in a job or session must be given the server's CA", "err", err)
	}
	if len(ag.cfg.Watchdog) > 0 {
		wd, err := startWatchdog(ag.cfg.Watchdog, ag.cgroups.nodeDirs(), ag.log)
		if err != nil {
			ag.lock.Close()
			return fmt.Errorf("%w: without it, a job's processes could outlive this agent and run beside the job's retry", err)
		}
		ag.wd = wd
	}
	defer ag.wd.close()
	fctx, stopFence := context.WithCancel(ctx)
	defer stopFence()
	go ag.fenceLoop(fctx)
	retry.Reset()
	for ctx.Err() == nil {
		began := time.Now()
		err := ag.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if dspool.ErrorCode(err) == dspool.EUnauthorized {
			// Cut off (the node was removed): nothing placed here may
			// keep running.
			ag.log.Error("the server refuses this node's credential: stopping its work", "err", err)
			ag.stopWork()
			ag.wd.close()
			ag.lock.Close()
			return err
		}
		if time.Since(began) > 10*time.Second {
			retry.Reset()
		}
		wait := retry.Next()
		ag.log.Warn("connection to server lost; attempts keep running, reconnecting", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			break
		}
	}
	ag.shutdown()
	ag.wd.close()
	ag.lock.Close()
	return nil
}

// stopWork stops every attempt and removes what they had on this machine;
// it returns how many there were.
func (ag *Agent) stopWork() int {
	ag.mu.Lock()
	n := len(ag.attempts)
	ag.mu.Unlock()
	ag.log.Info("agent stopping", "attempts", n)
	ag.stopAll()
	ag.endAllSessions()
	if ag.cgroups != nil {
		ag.cgroups.removeAll()
	}
	if ag.runtime != "" {
		_ = os.RemoveAll(ag.runtime)
		_ = os.RemoveAll(ag.runtime + ".images") // the file images' run root, its containers gone
	}
	return n
}

// shutdown stops every attempt, then tells the server how they ended (as
// node_lost: the node went away under them, so they are retried when their
// job allows), so a restarted pool does not have to guess, and, unless
// StayOnStop, that the node leaves.
func (ag *Agent) shutdown() {
	n := ag.stopWork()
	if n == 0 && ag.cfg.StayOnStop {
		return // nothing ran here: nothing to report
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, br, _, err := ag.dial(ctx)
	if err != nil {
		return
	}
	sess, err := yamux.Client(&readConn{Conn: conn, r: br}, api.MuxConfig())
	if err != nil {
		conn.Close()
		return
	}
	defer sess.Close()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return sess.Open() },
	}}
	hb := ag.snapshot()
	hb.Leaving = !ag.cfg.StayOnStop
	if _, err := ag.send(ctx, hc, hb); err != nil {
		ag.log.Warn("final report to the server", "err", err)
	} else if hb.Leaving {
		ag.log.Info("the node left its pool; it comes back when this agent starts again")
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// session serves one connection: the server's requests on streams it
// opens, and this agent's heartbeats on streams the agent opens.
func (ag *Agent) session(ctx context.Context) error {
	conn, br, hdr, err := ag.dial(ctx)
	if err != nil {
		return err
	}
	if t := hdr.Get(api.LeaderTermHeader); t != "" {
		term, _ := strconv.ParseInt(t, 10, 64)
		if seen := ag.term.Load(); term < seen {
			conn.Close()
			return fmt.Errorf("the control plane that answered leads under term %d, and another has led since (term %d): it no longer leads; connecting again", term, seen)
		}
		ag.term.Store(term)
	}
	grace, _ := time.ParseDuration(hdr.Get(api.NodeGraceHeader))
	ag.connected(grace)
	sess, err := yamux.Client(&readConn{Conn: conn, r: br}, api.MuxConfig())
	if err != nil {
		conn.Close()
		return err
	}
	defer sess.Close()
	// Sessions outlive the connection: a restarted control plane takes
	// them up from the next heartbeat; cut off past the node grace, the
	// fence ends them (fence.go).
	ag.log.Info("connected to server", "server", ag.cfg.Server, "node", ag.node)
	mux := http.NewServeMux()
	l := &link{}
	mux.HandleFunc("POST /attempts", func(w http.ResponseWriter, r *http.Request) { ag.serveStart(l, w, r) })
	mux.HandleFunc("POST /kill", ag.serveKill)
	mux.HandleFunc("POST /sessions/channel", ag.serveChannel)
	mux.HandleFunc("POST /sessions/forward", ag.serveForward)
	mux.HandleFunc("POST /sessions/end", ag.serveSessionEnd)
	mux.HandleFunc("POST /sessions/notebook", ag.serveNotebook)
	mux.HandleFunc("POST /sessions/notebook/stop", ag.serveNotebookStop)
	mux.HandleFunc("POST /sessions/notebook/connect", ag.serveNotebookConnect)
	mux.HandleFunc("POST /sessions/notebook/activity", ag.serveNotebookActivity)
	srv := &http.Server{Handler: http.MaxBytesHandler(mux, 4<<20), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(sess) }()
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         func(context.Context, string, string) (net.Conn, error) { return sess.Open() },
		MaxIdleConnsPerHost: 2,
	}, Timeout: 30 * time.Second}
	return ag.heartbeatLoop(ctx, sess, hc, l)
}

func (ag *Agent) serveKill(w http.ResponseWriter, r *http.Request) {
	var k api.Kill
	if err := json.NewDecoder(r.Body).Decode(&k); err != nil {
		http.Error(w, "bad attempt: "+err.Error(), http.StatusBadRequest)
		return
	}
	if k.Reason != "" && k.Reason != dspool.ReasonPreempted {
		http.Error(w, fmt.Sprintf("bad kill: reason %q is not one the server gives", k.Reason), http.StatusBadRequest)
		return
	}
	ag.mu.Lock()
	a := ag.attempts[k.AttemptRef]
	ag.mu.Unlock()
	if a != nil {
		ag.kill(a, k.Reason)
	}
	w.WriteHeader(http.StatusOK)
}

// accept starts an attempt unless this agent already knows it: the server
// may send the same attempt more than once, and it must run at most once,
// also across this node's agents (started.go).
func (ag *Agent) accept(spec api.AttemptSpec) {
	ag.mu.Lock()
	if _, ok := ag.attempts[spec.AttemptRef]; ok {
		ag.mu.Unlock()
		return
	}
	a := &attempt{spec: spec, done: make(chan struct{})}
	ag.attempts[spec.AttemptRef] = a
	ag.mu.Unlock()
	ag.noteStarted(spec.AttemptRef)
	ag.startsAttempt(time.Duration(spec.KillGrace))
	ag.launch(a)
}

// setup runs the pool's setup script once, as root, before the node takes
// work; a failure marks the node failed with the script's output.
func (ag *Agent) setup(ctx context.Context, p *dspool.Pool) {
	state, msg := dspool.NodeReady, ""
	if p.Setup != "" {
		ag.log.Info("running the pool's setup script", "pool", p.Name)
		sctx, cancel := context.WithTimeout(ctx, time.Duration(p.SetupTimeout))
		cmd := exec.CommandContext(sctx, "/bin/sh", "-c", p.Setup)
		cmd.Dir = ag.cfg.Share
		cmd.Env = append(os.Environ(), "DSPOOL_SHARE="+ag.cfg.Share, "DSPOOL_POOL="+p.Name, "DSPOOL_NODE="+ag.nodeName)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		cancel()
		if err != nil {
			o := out.String()
			if len(o) > 4000 {
				o = "..." + o[len(o)-4000:]
			}
			if sctx.Err() == context.DeadlineExceeded {
				err = fmt.Errorf("timed out after %s", time.Duration(p.SetupTimeout))
			}
			state, msg = dspool.NodeFailed, fmt.Sprintf("setup script failed (%v); its output:\n%s", err, o)
			ag.log.Error("setup script failed", "err", err)
		}
	}
	ag.mu.Lock()
	ag.state, ag.message = state, msg
	ag.mu.Unlock()
	ag.changed()
}

// stopAll ends every running attempt (SIGTERM, SIGKILL after each one's
// grace) and waits for them.
func (ag *Agent) stopAll() {
	ag.mu.Lock()
	var all []*attempt
	for _, a := range ag.attempts {
		all = append(all, a)
	}
	ag.mu.Unlock()
	for _, a := range all {
		ag.kill(a, dspool.ReasonNodeLost)
	}
	for _, a := range all {
		select {
		case <-a.done:
		case <-time.After(time.Duration(a.spec.KillGrace) + 5*time.Second):
		}
	}
}
