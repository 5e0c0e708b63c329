package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
	"github.com/dspool/dspool/internal/netns"
)

// The hosts: a range, namespaces and a bridge of their own, so that the
// benchmark runs beside the end-to-end tests (10.79.0, dsph*).
var hostsConfig = netns.Config{Net: "10.78.0", Prefix: "dspbh", Switch: "dspbsw", N: 4}

const (
	h1, h2, h4 = 1, 2, 4 // the control plane, the node across the network, the clients (h3 stays idle)

	apiPort   = 8443 // dspool server, HTTPS, on every address of h1
	sshPort   = 2222 // its gateway
	upAPIPort = 8444 // dspool up, HTTPS
	upSSHPort = 2223 // its gateway
	peerPort  = 2200 // the OpenSSH peer in h2, and the jump host in h1

	// The accounts: the admins, one user per dspool variant (an account
	// per user and store: the agents create them with their store's uid),
	// and the OpenSSH peer's user.
	admin1, admin2 = "dspbadm1", "dspbadm2"
	peerUser       = "dspbpeer"
)

// variant is a dspool node reached one way.
type variant struct {
	key, link string
	user      string
	pool      string // "" for the default
	plane     *plane
	token     string      // the user's API token
	client    *api.Client // as the user, from h4
	ssh       *SSHTarget
}

// cluster is everything the benchmark runs, and how to take it down.
type cluster struct {
	h        *netns.Hosts
	dir, bin string
	procs    []*proc  // stopped in reverse
	undo     []func() // after the processes: unmount, remove accounts, remove the hosts; in reverse
	variants []*variant
	direct   *SSHTarget
	jump     *SSHTarget
}

// startCluster makes the hosts and starts everything on them. On error,
// stop takes down what was started.
func startCluster(ctx context.Context, dir, bin, kex string) (*cluster, error) {
	h, err := netns.Up(hostsConfig)
	if err != nil {
		return nil, err
	}
	c := &cluster{h: h, dir: dir, bin: bin}
	c.undo = append(c.undo, func() {
		if err := h.Down(); err != nil {
			host.Logf("remove the hosts: %v", err)
		}
	})
	host.Logf("hosts %s.1-%d (namespaces %s1-%d)", hostsConfig.Net, hostsConfig.N, hostsConfig.Prefix, hostsConfig.N)
	for _, name := range []string{admin1, admin2, "dspbx", "dspbt", "dspbp"} {
		if !host.UserExists(name) {
			c.undo = append(c.undo, func() {
				if host.UserExists(name) {
					host.RemoveUser(name)
				}
			})
		}
	}
	b1, b2 := host.UIDBase(), host.FreeUIDBase(host.UIDBase()+100)
	server, err := c.startServer(ctx, b1)
	if err != nil {
		return c, err
	}
	up, err := c.startUp(ctx, b2)
	if err != nil {
		return c, err
	}
	// The node dspool up made of this machine; the server's get the same.
	pools, err := up.adm.Pools(ctx)
	if err != nil || len(pools) == 0 {
		return c, fmt.Errorf("dspool up's pools: %v", err)
	}
	if err := c.joinNodes(ctx, server, pools[0].Node); err != nil {
		return c, err
	}
	host.Logf("dspool: server in h1 with nodes h2 (cross) and h1 (local); up in h1 with its own node")
	c.variants = []*variant{
		{key: "h2-https", user: "dspbx", pool: "cross", plane: server,
			link: fmt.Sprintf("dspool server in h1; dspool agent in h2 -> https://%s:%d (TLS, across the bridge)", h.Addr(h1), apiPort)},
		{key: "h1-https", user: "dspbt", pool: "local", plane: server,
			link: fmt.Sprintf("dspool server in h1; dspool agent in h1 -> https://127.0.0.1:%d (TLS, loopback)", apiPort)},
		{key: "h1-plain", user: "dspbp", plane: up,
			link: "dspool up in h1; its own agent in h1 -> http://127.0.0.1:PORT (plain, loopback: its local agents' listener)"},
	}
	// The client's keys: one per user (dspool lets a key log in one user
	// of a store), the same kind for every target.
	endpoint := openssh.Endpoint{Host: h.Addr(h1), Kex: kex, Start: func(cmd *exec.Cmd) error { return h.Do(h4, cmd.Start) }}
	for _, v := range c.variants {
		e := endpoint
		e.Key, e.Port = filepath.Join(dir, "client_ed25519_"+v.key), v.plane.sshPort
		if err := openssh.MakeKey(ctx, e.Key); err != nil {
			return c, err
		}
		if err := c.addUser(ctx, v, e.Key+".pub"); err != nil {
			return c, err
		}
		e.User = v.user
		if v.pool != "" {
			e.User += "+" + v.pool // the pool to land in
		}
		v.ssh = &SSHTarget{Name: "dspool " + v.key, Route: fmt.Sprintf("h4 -> gateway %s:%d -> node %s", h.Addr(h1), e.Port, v.key[:2]), e: e}
	}
	endpoint.Key = filepath.Join(dir, "client_ed25519_openssh")
	if err := openssh.MakeKey(ctx, endpoint.Key); err != nil {
		return c, err
	}
	return c, c.startPeer(ctx, endpoint)
}

// plane is a control plane as h4 reaches it.
type plane struct {
	*proc
	front   string      // https://10.78.0.1:PORT
	tls     *tls.Config // trusts its CA
	adm     *api.Client // its admin, from h4
	sshPort int         // its gateway's, on h1's address
	share   string      // its share's directory
	mounts  map[int]string
}

// startServer starts dspool server in h1, HTTPS on every address of h1 (h4
// reaches it at h1's, its own node in h1 at 127.0.0.1), with its share
// served to h2 over sshfs.
func (c *cluster) startServer(ctx context.Context, uidBase int) (*plane, error) {
	h, dir := c.h, filepath.Join(c.dir, "server")
	p := &plane{front: fmt.Sprintf("https://%s:%d", h.Addr(h1), apiPort), sshPort: sshPort, share: filepath.Join(dir, "share")}
	if err := os.MkdirAll(p.share, 0o755); err != nil {
		return nil, err
	}
	sh, err := h.ServeShare(h1, p.share, c.dir, h2)
	if sh != nil {
		c.undo = append(c.undo, func() {
			if err := sh.Close(); err != nil {
				host.Logf("%v", err)
			}
		})
	}
	if err != nil {
		return nil, err
	}
	p.mounts = sh.Mounts
	config := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, "listen: 0.0.0.0:%d\nssh_listen: %s:%d\nadvertise: [%s]\ndata: %s\nshare: %s\nadmin: %s\nuid_base: %d\n",
		apiPort, h.Addr(h1), sshPort, h.Addr(h1), filepath.Join(dir, "data"), p.share, admin1, uidBase), 0o644); err != nil {
		return nil, err
	}
	if p.proc, err = c.start(h1, "dspool server", filepath.Join(dir, "server.log"), nil, c.bin, "server", "--config", config); err != nil {
		return nil, err
	}
	if p.tls, err = waitFile(ctx, p.proc, filepath.Join(dir, "data", "tls", "ca.crt"), api.TLSConfig); err != nil {
		return nil, err
	}
	token, err := waitFile(ctx, p.proc, filepath.Join(dir, "data", "admin-token"), func(path string) (string, error) {
		b, err := os.ReadFile(path)
		return strings.TrimSpace(string(b)), err
	})
	if err != nil {
		return nil, err
	}
	p.adm = &api.Client{Server: p.front, Token: token, HTTP: c.from(h4, api.HTTPClientWith(p.tls))}
	return p, c.answers(ctx, p.proc, p.adm)
}

// startUp starts dspool up in h1, HTTPS to h4 too; its own node is an agent
// process it starts, which reaches it over its plain loopback listener. Its
// control plane gets every cpu, as dspool server's does (dspool up gives it
// half by default: the machine is its nodes too).
func (c *cluster) startUp(ctx context.Context, uidBase int) (*plane, error) {
	h, dir := c.h, filepath.Join(c.dir, "up")
	p := &plane{front: fmt.Sprintf("https://%s:%d", h.Addr(h1), upAPIPort), sshPort: upSSHPort, share: filepath.Join(dir, "share")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	login := filepath.Join(dir, "login.json")
	var err error
	p.proc, err = c.start(h1, "dspool up", filepath.Join(dir, "up.log"),
		[]string{"DSPOOL_CONFIG=" + login, "GOMAXPROCS=" + strconv.Itoa(runtime.NumCPU())}, c.bin, "up",
		"--data", filepath.Join(dir, "data"), "--share", p.share, "--nodes", "1",
		"--listen", fmt.Sprintf("%s:%d", h.Addr(h1), upAPIPort), "--ssh-listen", fmt.Sprintf("%s:%d", h.Addr(h1), upSSHPort),
		"--admin", admin2, "--uid-base", strconv.Itoa(uidBase))
	if err != nil {
		return nil, err
	}
	p.adm, err = waitFile(ctx, p.proc, login, func(path string) (*api.Client, error) {
		cl, ok := host.LoginClient(path)
		if !ok {
			return nil, errors.New("no login yet")
		}
		return cl, nil
	})
	if err != nil {
		return nil, err
	}
	p.tls = host.TLSOf(p.adm)
	p.adm.HTTP = c.from(h4, p.adm.HTTP)
	if err := c.answers(ctx, p.proc, p.adm); err != nil {
		return nil, err
	}
	return p, c.waitNodes(ctx, p.adm, 1, p.log)
}

// joinNodes starts the server's two nodes, of the given size: h2 across the
// network, with the share over sshfs; h1 on loopback, with the share's
// directory. Each joins with nothing but a join token, which carries the
// CA's pin.
func (c *cluster) joinNodes(ctx context.Context, server *plane, node dspool.NodeSize) error {
	var ps []*dspool.Pool
	for _, name := range []string{"cross", "local"} {
		ps = append(ps, &dspool.Pool{Name: name, Provider: dspool.Provider(dspool.ProviderStatic), Node: node, Count: 1})
	}
	if _, err := server.adm.ApplyPools(ctx, ps); err != nil {
		return fmt.Errorf("apply the server's pools: %w", err)
	}
	for _, a := range []struct {
		on                  int
		pool, server, share string
	}{
		{h2, "cross", server.front, server.mounts[h2]},
		{h1, "local", fmt.Sprintf("https://127.0.0.1:%d", apiPort), server.share},
	} {
		jt, err := server.adm.JoinToken(ctx, a.pool)
		if err != nil {
			return fmt.Errorf("join token: %w", err)
		}
		state := filepath.Join(c.dir, "agent-"+a.pool)
		if _, err := c.start(a.on, "dspool agent ("+a.pool+")", state+".log", []string{"DSPOOL_JOIN_TOKEN=" + jt.Token}, c.bin, "agent",
			"--server", a.server, "--pool", a.pool, "--name", fmt.Sprintf("h%d", a.on), "--share", a.share, "--state", state,
			"--cpus", node.CPUs.String(), "--memory", strconv.FormatInt(int64(node.Memory), 10)); err != nil {
			return err
		}
	}
	return c.waitNodes(ctx, server.adm, 2, server.log)
}

// startPeer starts OpenSSH: sshd in h2 (the peer) and in h1 (the jump
// host), letting the peer's user in with the client's key.
func (c *cluster) startPeer(ctx context.Context, e openssh.Endpoint) error {
	removeUser, err := openssh.PeerUser(ctx, peerUser)
	if err != nil {
		return err
	}
	c.undo = append(c.undo, removeUser)
	e.User, e.Port = peerUser, peerPort
	hop := e
	e.Host = c.h.Addr(h2)
	c.direct = &SSHTarget{Name: "openssh direct", Route: fmt.Sprintf("h4 -> sshd %s:%d", e.Host, e.Port), e: e}
	c.jump = &SSHTarget{Name: "openssh jump host", Route: fmt.Sprintf("h4 -> sshd %s:%d (ssh -W) -> sshd %s:%d", hop.Host, hop.Port, e.Host, e.Port), e: e}
	c.jump.e.Jump = &hop
	for _, on := range []int{h2, h1} {
		s, err := openssh.StartServer(ctx, openssh.ServerConfig{Dir: filepath.Join(c.dir, fmt.Sprintf("sshd-h%d", on)),
			Listen: fmt.Sprintf("%s:%d", c.h.Addr(on), peerPort), User: peerUser, AuthorizedKey: e.Key + ".pub",
			Command: func(name string, args ...string) *exec.Cmd { return c.h.Command(on, name, args...) },
			Dial:    c.h.Dialer(h4, &net.Dialer{})})
		if err != nil {
			return fmt.Errorf("sshd in h%d: %w", on, err)
		}
		c.undo = append(c.undo, s.Stop) // before removeUser, which is undone later
	}
	return nil
}

// answers waits until the API answers h4.
func (c *cluster) answers(ctx context.Context, p *proc, cl *api.Client) error {
	var last error
	err := host.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited: %s", p.name, p.tail())
		}
		_, last = cl.WhoAmI(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s's API from h4: %w (%v; its log: %s)", p.name, err, last, p.log)
	}
	return nil
}

// waitNodes waits until n nodes are ready.
func (c *cluster) waitNodes(ctx context.Context, cl *api.Client, n int, log string) error {
	var ready int
	err := host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		nodes, err := cl.Nodes(ctx, "")
		ready = 0
		for _, nd := range nodes {
			if nd.State == dspool.NodeReady {
				ready++
			}
		}
		return err == nil && ready >= n, nil
	})
	if err != nil {
		return fmt.Errorf("%d of %d nodes ready: %w (the control plane's log: %s; the agents' beside it)", ready, n, err, log)
	}
	return nil
}

// addUser creates v's user, its API token and its SSH key, and v's client.
func (c *cluster) addUser(ctx context.Context, v *variant, pub string) error {
	adm := v.plane.adm
	if _, err := adm.CreateUser(ctx, api.UserCreate{Name: v.user}); err != nil {
		return fmt.Errorf("create user %s: %w", v.user, err)
	}
	tok, err := adm.CreateToken(ctx, v.user)
	if err != nil {
		return fmt.Errorf("token for %s: %w", v.user, err)
	}
	key, err := os.ReadFile(pub)
	if err != nil {
		return err
	}
	if _, err := adm.AddKey(ctx, v.user, strings.TrimSpace(string(key))); err != nil {
		return fmt.Errorf("key of %s: %w", v.user, err)
	}
	v.token = tok.Secret
	v.client = &api.Client{Server: v.plane.front, Token: v.token, HTTP: adm.HTTP}
	return nil
}

// from is hc with its connections made from host i.
func (c *cluster) from(i int, hc *http.Client) *http.Client {
	t := hc.Transport.(*http.Transport).Clone()
	t.Proxy = nil // the hosts are reached directly, whatever the environment says
	t.DialContext = c.h.Dialer(i, &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second})
	return &http.Client{Transport: t, Timeout: hc.Timeout, CheckRedirect: hc.CheckRedirect}
}

// stop takes everything down: the processes (in reverse), then the rest.
func (c *cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop()
	}
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
}

// waitFile polls read(path) until it succeeds, p exits or a minute passes.
func waitFile[T any](ctx context.Context, p *proc, path string, read func(string) (T, error)) (T, error) {
	var v T
	var last error
	err := host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited: %s", p.name, p.tail())
		}
		v, last = read(path)
		return last == nil, nil
	})
	if err != nil {
		return v, fmt.Errorf("%s: %w (%v; its log: %s)", path, err, last, p.log)
	}
	return v, nil
}

// proc is a long-running process on a host, stopped by its PID.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

// start starts bin args on host i, its output in log, with env added to
// this process's (without its dspool settings).
func (c *cluster) start(i int, name, log string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := &proc{name: name, log: log, cmd: c.h.Command(i, bin, args...), done: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSPOOL_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Its own process group: a Ctrl-C at the terminal reaches this
	// program, which stops everything in order; SIGINT should this
	// program be killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	return host.Tail(b, 3)
}

// stop sends the Ctrl-C dspool expects; SIGKILL after 30s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		host.Logf("%s did not stop within 30s: killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
