// Package dspooltest starts a whole dspool in-process for tests: a control
// plane on a real SQLite store behind an httptest server, and real agents
// that run real processes, in one line:
//
//	p := dspooltest.New(t, dspooltest.Options{Nodes: 2})
package dspooltest

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/secrets"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
	"golang.org/x/crypto/ssh"
)

// Options configures New. Zero values mean the defaults.
type Options struct {
	// Nodes is how many agents join the pool "default" (default 0).
	Nodes int
	// NodeCPUs and NodeMemory size the default pool (default 2 cpus, 2GiB).
	NodeCPUs   dspool.MilliCPU
	NodeMemory dspool.Bytes
	NodeGPUs   int
	// NodeGrace is the server's grace for silent nodes (default 2s).
	NodeGrace time.Duration
	// NodeGoneAfter is how long a node stays lost before it is gone
	// (default the server's, 10m).
	NodeGoneAfter time.Duration
	// UIDBase is the first uid given to users (default 40000). When the
	// test runs as root, agents create these accounts on this machine: give
	// each test that runs jobs its own base, since the admin is named after
	// it ("admin<UIDBase>") and a name must keep its uid.
	UIDBase int
	// Dir holds the store, the share and the agents' state (default a new
	// temporary directory): a test of a full disk gives a small file system.
	Dir string
	// Share is the pool's share (default Dir/share).
	Share string
	// Reserve is the room the store keeps on its disk (default 1 MiB).
	Reserve int64
	// TrustedProxies are the server's trusted proxies (none by default):
	// 127.0.0.1/32 makes the test's own requests come through a proxy.
	TrustedProxies []netip.Prefix
	// MaxConnsPerSource bounds the connections one address holds, as the
	// server's front end does (server.LimitListener, with its busy
	// answer); 0: no bound.
	MaxConnsPerSource int
}

// Pool is a running in-process pool.
type Pool struct {
	t      testing.TB
	URL    string
	Share  string
	DB     *store.DB
	Server *server.Server
	// Admin is a client authenticated as the first admin.
	Admin *api.Client

	dir    string
	cancel context.CancelFunc
	mu     sync.Mutex
	agents []*Agent
	wg     sync.WaitGroup
}

// Agent is one in-process agent.
type Agent struct {
	*agent.Agent
	// Link carries the agent's connection to the server.
	Link   *Link
	cancel context.CancelFunc
	done   chan struct{}
}

// Done is closed when the agent has stopped, by Stop or by itself (its
// node was removed).
func (a *Agent) Done() <-chan struct{} { return a.done }

// Stop stops the agent (and its attempts) and waits for it.
func (a *Agent) Stop() {
	a.cancel()
	<-a.done
}

// New starts a control plane and opts.Nodes agents, all stopped at the end
// of the test.
func New(t testing.TB, opts Options) *Pool {
	t.Helper()
	if opts.NodeCPUs == 0 {
		opts.NodeCPUs = 2000
	}
	if opts.NodeMemory == 0 {
		opts.NodeMemory = 2 << 30
	}
	if opts.NodeGrace == 0 {
		opts.NodeGrace = 2 * time.Second
	}
	if opts.UIDBase == 0 {
		opts.UIDBase = 40000
	}
	opts.Reserve = cmp.Or(opts.Reserve, 1<<20)
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	// Jobs run as their users when the test runs as root: they must reach
	// the share.
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	_ = os.Chmod(dir, 0o755)
	share := cmp.Or(opts.Share, filepath.Join(dir, "share"))
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	db, err := store.Open(ctx, filepath.Join(dir, "dspool.db"), store.Options{UIDBase: opts.UIDBase, Reserve: opts.Reserve})
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := secrets.Load(secrets.Source{File: filepath.Join(dir, "secrets.key")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An SSH host key, which the control plane hands to gateways of their
	// own process.
	_, hk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(hk, "dspooltest host key")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{SSHHostKey: pem.EncodeToMemory(blk), Store: db, Share: share, NodeGrace: opts.NodeGrace, NodeGoneAfter: opts.NodeGoneAfter, KillGrace: time.Second, Heartbeat: 200 * time.Millisecond,
		Secrets: keys, TrustedProxies: opts.TrustedProxies})
	hs := httptest.NewUnstartedServer(srv.Handler())
	if opts.MaxConnsPerSource > 0 {
		hs.Listener = server.LimitListener(hs.Listener, server.Limits{PerSource: opts.MaxConnsPerSource, Busy: server.BusyAnswer(nil)})
	}
	hs.Start()
	p := &Pool{t: t, URL: hs.URL, Share: share, DB: db, Server: srv, dir: dir, cancel: cancel}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); srv.Run(ctx) }()
	t.Cleanup(func() {
		p.mu.Lock()
		agents := p.agents
		p.mu.Unlock()
		for _, a := range agents {
			a.Stop()
		}
		cancel()
		hs.CloseClientConnections()
		hs.Close()
		p.wg.Wait()
		p.removeAccounts()
		db.Close()
	})
	admin, err := db.CreateUser(ctx, fmt.Sprintf("admin%d", opts.UIDBase), true)
	if err != nil {
		t.Fatal(err)
	}
	p.Admin = p.ClientFor(admin)
	pool := &dspool.Pool{Name: dspool.DefaultPool, Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: opts.NodeCPUs, Memory: opts.NodeMemory, GPUs: opts.NodeGPUs}, Count: opts.Nodes}
	if _, err := p.Admin.ApplyPools(ctx, []*dspool.Pool{pool}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < opts.Nodes; i++ {
		p.AddAgent(dspool.DefaultPool, agent.Config{CPUs: opts.NodeCPUs, Memory: opts.NodeMemory, GPUs: opts.NodeGPUs})
	}
	p.WaitReady(dspool.DefaultPool, opts.Nodes)
	return p
}

// removeAccounts deletes the OS accounts agents created for this test's
// users (those whose home is on this test's share), so test runs as root do
// not pile up accounts on the machine.
func (p *Pool) removeAccounts() {
	users, err := p.DB.Users(context.Background())
	if err != nil {
		return
	}
	for _, u := range users {
		if acct, err := user.Lookup(u.Name); err == nil && strings.HasPrefix(acct.HomeDir, p.Share+"/") {
			_ = exec.Command("userdel", u.Name).Run()
			_ = exec.Command("groupdel", u.Name).Run()
		}
	}
}

// Agents returns the agents started so far.
func (p *Pool) Agents() []*Agent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Agent(nil), p.agents...)
}

// ClientFor returns a client authenticated as u, with a new token.
func (p *Pool) ClientFor(u *dspool.User) *api.Client {
	secret := server.NewSecret("dsp_")
	if _, err := p.DB.CreateToken(context.Background(), u.ID, server.HashSecret(secret)); err != nil {
		p.t.Fatal(err)
	}
	return &api.Client{Server: p.URL, Token: secret}
}

// AddAgent starts an agent that joins pool with a new join token; cfg's
// inventory fields are used as given (zero GPUs means none).
func (p *Pool) AddAgent(pool string, cfg agent.Config) *Agent {
	p.t.Helper()
	a, err := p.addAgent(pool, cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	return a
}

func (p *Pool) addAgent(pool string, cfg agent.Config) (*Agent, error) {
	tok, err := p.Admin.JoinToken(context.Background(), pool)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	n := len(p.agents)
	p.mu.Unlock()
	link := newLink(p.t, p.URL[len("http://"):])
	cfg.Server, cfg.JoinToken, cfg.Pool = link.URL(), tok.Token, pool
	cfg.Share = p.Share
	cfg.StateDir = filepath.Join(p.dir, "agents", fmt.Sprint(n))
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("%s-%d", pool, n)
	}
	ag, err := agent.New(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{Agent: ag, Link: link, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := ag.Run(ctx); err != nil {
			p.t.Logf("agent %s: %v", cfg.Name, err)
		}
	}()
	p.mu.Lock()
	p.agents = append(p.agents, a)
	p.mu.Unlock()
	return a, nil
}

// WaitReady waits until pool has n ready nodes.
func (p *Pool) WaitReady(pool string, n int) {
	p.t.Helper()
	p.Eventually(10*time.Second, func() bool {
		nodes, err := p.Admin.Nodes(context.Background(), pool)
		if err != nil {
			return false
		}
		ready := 0
		for _, nd := range nodes {
			if nd.State == dspool.NodeReady {
				ready++
			}
		}
		return ready >= n
	}, "%d ready nodes in pool %s", n, pool)
}

// Eventually polls cond until it holds or timeout passes.
func (p *Pool) Eventually(timeout time.Duration, cond func() bool, what string, args ...any) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %s waiting for "+what, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wait waits for job id to finish and returns it.
func (p *Pool) Wait(c *api.Client, id int64) *dspool.Job {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		j, err := c.WaitJob(ctx, id, 10*time.Second)
		if err != nil {
			p.t.Fatalf("wait for job %d: %v", id, err)
		}
		if j.State.Terminal() {
			return j
		}
	}
}
