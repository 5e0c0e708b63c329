package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/gateway/sshgw"
	"github.com/dspool/dspool/provider/local"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/sqlite"
	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

// planeOptions are the settings `up` and `server` share.
type planeOptions struct {
	Listen    string `json:"listen"`
	SSHListen string `json:"ssh_listen"`
	// SSHCiphers are the gateway's ciphers (default AES-GCM only).
	SSHCiphers []string `json:"ssh_ciphers"`
	// SSHPasswordAuth allows password logins at the gateway.
	SSHPasswordAuth bool `json:"ssh_password_auth"`
	// TLSCert and TLSKey (PEM files) serve the API over HTTPS.
	TLSCert   string          `json:"tls_cert"`
	TLSKey    string          `json:"tls_key"`
	Data      string          `json:"data"`
	Share     string          `json:"share"`
	NodeGrace dspool.Duration `json:"node_grace"`
	KillGrace dspool.Duration `json:"kill_grace"`
	Heartbeat dspool.Duration `json:"heartbeat"`
	Admin     string          `json:"admin"`
	UIDBase   int             `json:"uid_base"`
}

func (o *planeOptions) flags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.Listen, "listen", o.Listen, "address to serve the API on")
	f.StringVar(&o.SSHListen, "ssh-listen", o.SSHListen, "address of the SSH gateway (ssh USER@HOST -p PORT lands on a node); off to disable")
	f.StringVar(&o.TLSCert, "tls-cert", "", "certificate (PEM) to serve the API over HTTPS, with --tls-key")
	f.StringVar(&o.TLSKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.BoolVar(&o.SSHPasswordAuth, "ssh-password-auth", false, "allow SSH logins by password (set with dspool user passwd); keys only by default")
	f.StringSliceVar(&o.SSHCiphers, "ssh-ciphers", nil, "ciphers the SSH gateway offers (default aes128-gcm@openssh.com,aes256-gcm@openssh.com)")
	f.Var((*durationFlag)(&o.NodeGrace), "node-grace", "how long a node may be silent before its attempts are marked node_lost (default 30s)")
	f.Var((*durationFlag)(&o.KillGrace), "kill-grace", "time between SIGTERM and SIGKILL when a job is cancelled or times out (default 10s)")
	f.Var((*durationFlag)(&o.Heartbeat), "heartbeat", "agent heartbeat interval (default 2s)")
	f.IntVar(&o.UIDBase, "uid-base", 0, "first uid/gid given to users on a new store (default 20000)")
}

type durationFlag dspool.Duration

func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}
func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("%q has no unit: write e.g. %ss or %sm", s, s, s)
		}
		return fmt.Errorf("%q is not a duration (examples: 500ms, 30s, 2m, 1h30m)", s)
	}
	*d = durationFlag(v)
	return nil
}
func (d *durationFlag) Type() string { return "duration" }

func logger(w *os.File) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// plane is a running control plane.
type plane struct {
	db   *sqlite.DB
	srv  *server.Server
	http *http.Server
	url  string
	ln   net.Listener
	// agentURL is where local agents reach the control plane: the API
	// address, or a plain loopback one (agentLn) when the API is HTTPS.
	agentURL string
	agentLn  net.Listener
	// ca is the certificate file the CLI login trusts (the API's own).
	ca    string
	ssh   *sshgw.Gateway
	sshLn net.Listener
	admin *dspool.User
	lock  *os.File
}

func startPlane(ctx context.Context, o planeOptions, log *slog.Logger) (*plane, error) {
	sshOn := o.SSHListen != "" && o.SSHListen != "off"
	var cert *tls.Certificate
	if o.TLSCert != "" || o.TLSKey != "" {
		if o.TLSCert == "" || o.TLSKey == "" {
			return nil, dspool.Invalid("tls_cert", "give both a certificate and its key (--tls-cert and --tls-key), or neither")
		}
		c, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, dspool.Invalid("tls_cert", "cannot load %s and %s: %v", o.TLSCert, o.TLSKey, err)
		}
		cert = &c
	}
	if sshOn {
		if err := sshgw.CheckCiphers("ssh_ciphers", o.SSHCiphers); err != nil {
			return nil, err
		}
	}
	// The data directory is traversable but not listable: jobs running as
	// their users must reach the share inside it; the store file is 0600.
	if err := os.MkdirAll(o.Data, 0o711); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lock, err := lockDir(o.Data)
	if err != nil {
		return nil, err
	}
	// Take the addresses before creating anything, so that a start that
	// fails on a busy port leaves no new store behind (whose uid base, for
	// one, would then be fixed).
	var lns []net.Listener
	fail := func(err error) (*plane, error) {
		for _, l := range lns {
			l.Close()
		}
		lock.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w (is another dspool running? pass --listen HOST:PORT)", o.Listen, err))
	}
	lns = append(lns, ln)
	var sln net.Listener
	if sshOn {
		if sln, err = net.Listen("tcp", o.SSHListen); err != nil {
			return fail(fmt.Errorf("listen on %s for SSH: %w (is another dspool running? pass --ssh-listen HOST:PORT, or off)", o.SSHListen, err))
		}
		lns = append(lns, sln)
	}
	if os.Geteuid() == 0 {
		if dir := untraversable(o.Share); dir != "" {
			log.Warn("jobs run as their users and cannot reach the share: a parent directory is not searchable by others; use --data elsewhere (e.g. /var/lib/dspool) or chmod o+x it", "dir", dir)
		}
	}
	for _, d := range []string{"", "home", "jobs", "data"} {
		if err := os.MkdirAll(filepath.Join(o.Share, d), 0o755); err != nil {
			return fail(fmt.Errorf("share: %w", err))
		}
	}
	dbPath := filepath.Join(o.Data, "dspool.db")
	db, err := sqlite.Open(ctx, dbPath, sqlite.Options{UIDBase: o.UIDBase})
	if err != nil {
		return fail(err)
	}
	for _, f := range []string{dbPath, dbPath + "-wal", dbPath + "-shm"} {
		_ = os.Chmod(f, 0o600)
	}
	if o.UIDBase != 0 {
		if base, err := db.UIDBase(ctx); err == nil && base != o.UIDBase {
			db.Close()
			return fail(dspool.Invalid("uid_base", "the store in %s was made with uid base %d, and its users keep their uids: drop --uid-base (uid_base), or give a new --data for a new store", o.Data, base))
		}
	}
	srv := server.New(server.Config{Store: db, Share: o.Share, Logger: log, NodeGrace: time.Duration(o.NodeGrace),
		KillGrace: time.Duration(o.KillGrace), Heartbeat: time.Duration(o.Heartbeat), Version: Version})
	ln = server.LimitListener(ln, server.MaxConns)
	p := &plane{db: db, srv: srv, ln: ln, http: server.NewHTTPServer(srv.Handler()), lock: lock}
	scheme := "http"
	if cert != nil {
		// HTTP/1.1 only (no h2 in NextProtos): agent connections upgrade.
		p.ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
		if abs, err := filepath.Abs(o.TLSCert); err == nil {
			p.ca = abs
		}
	}
	if sshOn {
		key, err := sshgw.LoadOrCreateHostKey(filepath.Join(o.Data, "ssh_host_ed25519_key"))
		if err != nil {
			db.Close()
			return fail(err)
		}
		p.sshLn = sln
		p.ssh = sshgw.New(sshgw.Config{HostKey: key, Backend: sshgw.ServerBackend(srv), Logger: log, Ciphers: o.SSHCiphers,
			PasswordAuth: o.SSHPasswordAuth})
		log.Info("ssh gateway listening", "addr", sln.Addr().String(), "host_key", ssh.FingerprintSHA256(key.PublicKey()),
			"password_logins", o.SSHPasswordAuth)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	p.url = scheme + "://" + net.JoinHostPort(host, port)
	p.agentURL = p.url
	return p, nil
}

// localAgents gives agents on this machine a plain loopback address when
// the API is HTTPS (its certificate need not name 127.0.0.1; loopback
// traffic never leaves the machine).
func (p *plane) localAgents() error {
	if !strings.HasPrefix(p.url, "https://") {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on loopback for local agents: %w", err)
	}
	p.agentLn = ln
	p.agentURL = "http://" + ln.Addr().String()
	return nil
}

// serve runs the control plane until ctx ends.
func (p *plane) serve(ctx context.Context) {
	loops, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.srv.Run(loops) }()
	go func() { defer wg.Done(); _ = p.http.Serve(p.ln) }()
	if p.agentLn != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.http.Serve(p.agentLn) }()
	}
	if p.ssh != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.ssh.Serve(p.sshLn) }()
	}
	<-ctx.Done()
	if p.ssh != nil {
		p.ssh.Close()
		p.sshLn.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.http.Shutdown(sctx)
	stop()
	wg.Wait()
	p.close()
}

func (p *plane) close() {
	p.db.Close()
	p.lock.Close()
}

// lockDir takes an exclusive lock on dir (released when the process ends),
// so two control planes never share one store, share and set of local
// agents.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, fmt.Errorf("another dspool (pid %s) is using %s: stop it first, or give this one its own --data", strings.TrimSpace(string(b)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// ensureAdmin creates the first admin on a new store. It returns the admin.
func ensureAdmin(ctx context.Context, db *sqlite.DB, name string) (*dspool.User, bool, error) {
	users, err := db.Users(ctx)
	if err != nil {
		return nil, false, err
	}
	for _, u := range users {
		if u.Admin {
			return u, false, nil
		}
	}
	u, err := db.CreateUser(ctx, name, true)
	return u, true, err
}

// untraversable returns the first directory above path that other users
// cannot search, or "".
func untraversable(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	for dir := abs; ; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 == 0 {
			return dir
		}
		if dir == "/" {
			return ""
		}
	}
}

func defaultAdminName() string {
	if u, err := user.Current(); err == nil && u.Uid != "0" && dspool.ValidName(u.Username) {
		return u.Username
	}
	return "admin"
}

func (a *App) upCmd() *cobra.Command {
	o := planeOptions{Listen: "127.0.0.1:8080", SSHListen: "127.0.0.1:2222"}
	nodes := 0
	c := &cobra.Command{
		Use:   "up",
		Short: "Run a whole pool on this machine: control plane, local agents, store and share",
		Long: `Run a whole dspool on this machine, in the foreground: the control plane, a
local pool of agent processes, the store (SQLite) and the share (a directory),
all under one data directory. It logs this machine's CLI in, so
` + "`dspool job submit`" + ` works from another terminal at once. Ctrl-C stops the
agents and their jobs cleanly; running it again on the same directory resumes
the same pools, jobs and users.`,
		Example: "  dspool up\n  dspool up --nodes 4 --data /tmp/pool --listen 127.0.0.1:9090",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Data == "" {
				o.Data = a.defaultDataDir()
			}
			if nodes < 0 || nodes > 256 {
				return dspool.Invalid("--nodes", "must be between 0 and 256")
			}
			o.Share = filepath.Join(o.Data, "share")
			return a.up(cmd.Context(), o, nodes, cmd.Flags().Changed("nodes"))
		},
	}
	c.Flags().StringVar(&o.Data, "data", "", "data directory: store, share, agents (default $XDG_DATA_HOME/dspool; /var/lib/dspool as root)")
	c.Flags().IntVar(&nodes, "nodes", 1, "local agent processes of the default pool")
	c.Flags().StringVar(&o.Admin, "admin", "", "name of the first admin on a new store (default: your login name, or admin as root)")
	o.flags(c)
	return c
}

func (a *App) up(ctx context.Context, o planeOptions, nodes int, nodesSet bool) error {
	tuneGC()
	log := logger(os.Stderr)
	p, err := startPlane(ctx, o, log)
	if err != nil {
		return err
	}
	if o.Admin == "" {
		o.Admin = defaultAdminName()
	}
	if err := dspool.ValidateName("--admin", o.Admin); err != nil {
		p.close()
		return err
	}
	admin, _, err := ensureAdmin(ctx, p.db, o.Admin)
	if err != nil {
		p.close()
		return err
	}
	if os.Geteuid() == 0 {
		warnAccountClashes(ctx, p.db, log)
	}
	if err := a.defaultPool(ctx, p.db, nodes, nodesSet); err != nil {
		p.close()
		return err
	}
	cfgPath, err := a.login(ctx, p, admin)
	if err != nil {
		p.close()
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		p.close()
		return err
	}
	if err := p.localAgents(); err != nil {
		p.close()
		return err
	}
	prov := local.New(local.Options{Exe: exe, Server: p.agentURL, DataDir: o.Data, Share: o.Share, Logger: log,
		Removed: func(pool, name string) {
			if _, err := p.db.RetireNode(context.Background(), pool, name); err != nil {
				log.Error("retire node", "pool", pool, "node", name, "err", err)
			}
		}})
	tokens := map[string]string{}
	joinToken := func(pool string) (string, error) {
		if t, ok := tokens[pool]; ok {
			return t, nil
		}
		t := server.NewSecret("dspj_")
		if err := p.db.CreateJoinToken(ctx, pool, server.HashSecret(t)); err != nil {
			return "", err
		}
		tokens[pool] = t
		return t, nil
	}
	// The control plane outlives the agents on shutdown, so they can report
	// how their attempts ended.
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	served := make(chan struct{})
	go func() { p.serve(serveCtx); close(served) }()
	self := "dspool"
	if strings.Contains(os.Args[0], "/") && !strings.Contains(os.Args[0], "go-build") {
		self = os.Args[0]
	}
	fmt.Fprintf(a.Stdout, "dspool is up at %s\n  data:  %s\n  share: %s\n  CLI logged in as %s (%s)\n  try:   %s job submit --wait -- echo hello\n",
		p.url, o.Data, o.Share, admin.Name, cfgPath, self)
	if p.ssh != nil {
		host, port, _ := net.SplitHostPort(p.sshLn.Addr().String())
		fmt.Fprintf(a.Stdout, "  ssh:   %s key add ~/.ssh/id_ed25519.pub, then ssh -p %s %s@%s\n", self, port, admin.Name, host)
	}
	fmt.Fprintf(a.Stdout, "Press Ctrl-C to stop.\n")
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		pools, err := p.db.Pools(ctx)
		if err == nil {
			if err := prov.Reconcile(pools, joinToken); err != nil {
				log.Error("local pool", "err", err)
			}
			retireStrays(ctx, p.db, prov, pools, log)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(a.Stderr, "stopping agents and their jobs...")
			sctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.KillGrace)+30*time.Second)
			prov.Stop(sctx)
			cancel()
			stopServing()
			<-served
			return nil
		case <-tick.C:
		}
	}
}

// warnAccountClashes says which dspool users have an account on this
// machine with another uid: local agents cannot run their work until it is
// removed (a leftover from an earlier store, most often).
func warnAccountClashes(ctx context.Context, db *sqlite.DB, log *slog.Logger) {
	users, err := db.Users(ctx)
	if err != nil {
		return
	}
	for _, u := range users {
		acct, err := user.Lookup(u.Name)
		if err != nil || acct.Uid == strconv.Itoa(u.UID) {
			continue
		}
		log.Warn("an account with this user's name has another uid on this machine: their jobs and sessions cannot run here until it is removed (userdel) or the store is made with a --uid-base that matches",
			"user", u.Name, "dspool_uid", u.UID, "account_uid", acct.Uid)
	}
}

// retireStrays marks gone the nodes of local pools that no agent will ever
// come back for (the pool shrank while dspool was down).
func retireStrays(ctx context.Context, db *sqlite.DB, prov *local.Provider, pools []*dspool.Pool, log *slog.Logger) {
	for _, pool := range pools {
		if pool.Provider != dspool.ProviderLocal {
			continue
		}
		nodes, err := db.Nodes(ctx, pool.Name, false)
		if err != nil {
			return
		}
		for _, n := range nodes {
			if !prov.Wanted(pool, n.Name) {
				log.Info("retiring a node its local pool no longer has", "pool", pool.Name, "node", n.Name)
				_, _ = db.RetireNode(ctx, pool.Name, n.Name)
			}
		}
	}
}

// defaultPool creates the pool "default", sized from this machine, on a
// new store; --nodes given again changes its count.
func (a *App) defaultPool(ctx context.Context, db *sqlite.DB, nodes int, nodesSet bool) error {
	existing, err := db.Pools(ctx)
	if err != nil {
		return err
	}
	if len(existing) > 0 {
		if !nodesSet {
			return nil
		}
		for _, p := range existing {
			if p.Name == dspool.DefaultPool && p.Provider == dspool.ProviderLocal && p.Count != nodes {
				p.Count = nodes
				_, err := db.PutPool(ctx, p)
				return err
			}
		}
		return nil
	}
	n := max(nodes, 1)
	cpus := dspool.MilliCPU(runtime.NumCPU()*1000) / dspool.MilliCPU(n)
	mem := agent.MemTotal() / dspool.Bytes(n)
	if cpus < 1000 {
		cpus = 1000
	}
	p := &dspool.Pool{Name: dspool.DefaultPool, Provider: dspool.ProviderLocal, Node: dspool.NodeSize{CPUs: cpus, Memory: mem}, Count: nodes}
	if err := p.Normalize(""); err != nil {
		return err
	}
	_, err = db.PutPool(ctx, p)
	return err
}

// login writes the CLI config with this server and a working admin token,
// reusing the saved token when it still authenticates.
func (a *App) login(ctx context.Context, p *plane, admin *dspool.User) (string, error) {
	c := a.loadConfig()
	if c.Server != "" && c.Server != p.url {
		fmt.Fprintf(a.Stderr, "dspool: the CLI login in %s was for %s; it now points to this pool (set DSPOOL_CONFIG to keep logins apart)\n",
			a.defaultConfigPath(), c.Server)
	}
	if c.Token != "" {
		if u, err := p.db.UserByToken(ctx, server.HashSecret(c.Token)); err == nil && u.ID == admin.ID {
			c.Server, c.CA = p.url, p.ca
			return a.saveConfig(c)
		}
	}
	secret := server.NewSecret("dsp_")
	if _, err := p.db.CreateToken(ctx, admin.ID, server.HashSecret(secret)); err != nil {
		return "", err
	}
	return a.saveConfig(Config{Server: p.url, Token: secret, CA: p.ca})
}

func (a *App) serverCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "server --config FILE",
		Short: "Run the control plane alone (agents join from other machines)",
		Long: `Run the control plane alone. The config file (YAML):

  listen: 0.0.0.0:8080
  ssh_listen: 0.0.0.0:2222   # the SSH gateway; "off" to disable
  ssh_ciphers: [aes128-gcm@openssh.com, aes256-gcm@openssh.com]   # the default
  ssh_password_auth: false   # true: users with a password (dspool user passwd) may log in with it
  tls_cert: /etc/dspool/tls.crt   # serve the API over HTTPS (agents: --server https://..., --server-ca if private)
  tls_key: /etc/dspool/tls.key
  data: /var/lib/dspool      # the store
  share: /mnt/dspool         # where this machine mounts the share (to read job logs)
  admin: admin               # first admin, created on a new store
  node_grace: 30s
  kill_grace: 10s

On a new store it creates the first admin and writes its API token to
DATA/admin-token (mode 0600).`,
		Example: "  dspool server --config /etc/dspool/server.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return dspool.Invalid("--config", "give the server's config file")
			}
			b, err := readLimited(file, 1<<20)
			if err != nil {
				return err
			}
			js, err := yaml.YAMLToJSON(b)
			if err != nil {
				return fmt.Errorf("%s: not valid YAML: %w", file, err)
			}
			o := planeOptions{Listen: "127.0.0.1:8080", SSHListen: "127.0.0.1:2222", Admin: "admin"}
			if err := dspool.DecodeJSON(js, &o); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if o.Data == "" {
				return dspool.Invalid("data", "%s: give the data directory for the store", file)
			}
			if o.Share == "" {
				return dspool.Invalid("share", "%s: give the directory where this machine mounts the share", file)
			}
			return a.serve(cmd.Context(), o)
		},
	}
	c.Flags().StringVar(&file, "config", "", "server config file (YAML)")
	return c
}

func (a *App) serve(ctx context.Context, o planeOptions) error {
	tuneGC()
	log := logger(os.Stderr)
	p, err := startPlane(ctx, o, log)
	if err != nil {
		return err
	}
	admin, created, err := ensureAdmin(ctx, p.db, o.Admin)
	if err != nil {
		p.close()
		return err
	}
	if created {
		secret := server.NewSecret("dsp_")
		if _, err := p.db.CreateToken(ctx, admin.ID, server.HashSecret(secret)); err != nil {
			p.close()
			return err
		}
		path := filepath.Join(o.Data, "admin-token")
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			p.close()
			return err
		}
		fmt.Fprintf(a.Stdout, "created admin %s; its API token is in %s\n", admin.Name, path)
	}
	fmt.Fprintf(a.Stdout, "dspool server listening on %s (%s)\n", p.ln.Addr(), p.url)
	p.serve(ctx)
	return nil
}

// defaultDataDir is $XDG_DATA_HOME/dspool, or /var/lib/dspool for root,
// whose home other users (the jobs' users) cannot enter.
func (a *App) defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/dspool"
	}
	dir := a.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "dspool")
}
