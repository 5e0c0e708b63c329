package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/provider/local"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
	"github.com/dspool/dspool/yamljson"
	"github.com/spf13/cobra"
)

func (a *App) upCmd() *cobra.Command {
	o := planeOptions{Listen: "127.0.0.1:8080", SSHListen: "127.0.0.1:2222"}
	var keep retentionFlags
	nodes := 0
	c := &cobra.Command{
		Use:   "up",
		Short: "Run a whole pool on this machine: control plane, local agents, store and share",
		Long: `Run a whole dspool on this machine, in the foreground: the control plane, a
local pool of agent processes, the store (SQLite) in the data directory and
the share (users' homes and job output) in a directory beside it: a user who
fills the share must not fill the store's disk (docs/decisions/0009). Mount
the share on a file system of its own, or give users quotas (docs/guide.md),
to keep them apart for real. It logs this machine's CLI in, so
` + "`dspool job submit`" + ` works from another terminal at once. Ctrl-C (or SIGTERM)
stops the agents and their jobs cleanly; running it again on the same
directory resumes the same pools, jobs and users. Should it crash or be
killed (SIGKILL, a lost terminal), its agents and their jobs keep running,
and running it again on the same directory takes them over.`,
		Example: "  dspool up\n  dspool up --nodes 4 --data /tmp/pool --listen 127.0.0.1:9090",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.guardProcess(); err != nil {
				return err
			}
			defaultData := o.Data == ""
			if defaultData {
				o.Data = a.defaultDataDir()
			}
			if nodes < 0 || nodes > maxUpNodes {
				return dspool.Invalid("--nodes", "must be between 0 and %d", maxUpNodes)
			}
			if err := checkStoreFlag(o.Store); err != nil {
				return err
			}
			if o.Share == "" {
				var inside bool
				o.Share, inside = defaultShareDir(o.Data, defaultData && os.Geteuid() == 0)
				if inside {
					fmt.Fprintf(a.Stderr, "note: the share is %s, inside the data directory, because it holds files from before dspool kept them apart; "+
						"a user who fills it fills the store's disk too: move it (docs/decisions/0009) or give --share\n", o.Share)
				}
			}
			keep.apply(cmd, &o.Retention)
			return a.up(cmd.Context(), o, nodes, cmd.Flags().Changed("nodes"))
		},
	}
	c.Flags().StringVar(&o.Data, "data", "", "data directory: store, agents (default $XDG_DATA_HOME/dspool; /var/lib/dspool as root)")
	c.Flags().StringVar(&o.Share, "share", "", "the share: users' homes and job output (default DATA-share beside the data directory; /srv/dspool as root)")
	c.Flags().IntVar(&nodes, "nodes", 1, "local agent processes of the default pool, each an equal part of this machine")
	c.Flags().StringVar(&o.Admin, "admin", "", "name of the first admin on a new store (default: your login name, or admin as root)")
	o.flags(c)
	keep.add(c)
	return c
}

func (a *App) up(ctx context.Context, o planeOptions, nodes int, nodesSet bool) error {
	a.tuneGC()
	a.shareCPUs()
	log := logger(os.Stderr)
	o.getenv = a.Getenv
	kinds, err := a.kinds()
	if err != nil {
		return err
	}
	p, err := startPlane(ctx, o, kinds, log)
	if err != nil {
		return err
	}
	if err := p.startProviders(kinds, o, log); err != nil {
		p.close()
		return err
	}
	if o.Admin == "" {
		o.Admin = defaultAdminName()
	}
	if err := dspool.ValidateName("--admin", o.Admin); err != nil {
		p.close()
		return err
	}
	// As root, local agents make accounts on this machine: the first
	// admin of a new store must not get a uid an account here holds.
	var host []dspool.HostAccount
	if os.Geteuid() == 0 {
		if host, err = hostAccounts(ctx, p.db); err != nil {
			log.Warn("cannot read this machine's accounts", "err", err)
		}
	}
	admin, _, err := ensureAdmin(ctx, p.db, o.Admin, host, os.Geteuid() == 0)
	if err != nil {
		p.close()
		return err
	}
	if os.Geteuid() == 0 {
		warnAccountClashes(ctx, p.db, log)
		warnHostClashes(ctx, p.db, log)
	}
	if err := a.defaultPool(ctx, p.db, nodes, nodesSet, log); err != nil {
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
	if err := p.localAgents(o.Data, log); err != nil {
		p.close()
		return err
	}
	tokens := map[string]string{}
	var tokMu sync.Mutex
	joinToken := func(pool string) (string, error) {
		tokMu.Lock()
		defer tokMu.Unlock()
		if t, ok := tokens[pool]; ok {
			return t, nil
		}
		t := server.NewSecret("dspj_")
		if err := p.db.CreateJoinToken(context.Background(), pool, server.HashSecret(t)); err != nil {
			return "", err
		}
		tokens[pool] = t
		return t, nil
	}
	localOpts := local.Options{Exe: exe, Server: p.agentURL, DataDir: o.Data, Share: o.Share, Logger: log, JoinToken: joinToken}
	if localTestHooks != nil {
		localTestHooks(&localOpts)
	}
	prov := local.New(localOpts)
	if err := resumeLocal(ctx, p.db, prov, o.Data, log); err != nil {
		p.close()
		return err
	}
	strays, cancelStrays := context.WithTimeout(ctx, time.Duration(o.KillGrace)+30*time.Second)
	prov.StopStrays(strays)
	cancelStrays()
	p.srv.UseProvider(dspool.ProviderLocal, prov)
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
	if p.pin != "" {
		fmt.Fprintf(a.Stdout, "  CA:    %s (join tokens carry it; compare it when `dspool login` asks)\n", p.pin)
	}
	if p.ssh != nil {
		host, port, _ := net.SplitHostPort(p.sshLn.Addr().String())
		fmt.Fprintf(a.Stdout, "  ssh:   %s key add ~/.ssh/id_ed25519.pub, then ssh -p %s %s@%s\n", self, port, admin.Name, host)
	}
	if o.OIDC.Issuer != "" {
		name := o.OIDC.Name
		if name == "" {
			if u, err := url.Parse(o.OIDC.Issuer); err == nil {
				name = u.Hostname()
			}
		}
		fmt.Fprintf(a.Stdout, "  web:   %s/ (the dashboard: jobs and their logs, pools, usage, your Jupyter server; sign in with %s)\n", p.url, name)
	} else {
		fmt.Fprintf(a.Stdout, "  web:   %s/ (the dashboard: jobs and their logs, pools, usage, your Jupyter server; log in after %s user passwd)\n", p.url, self)
	}
	if o.OIDC.Issuer != "" {
		redirect := firstOf(o.OIDC.RedirectURL, p.url+server.OIDCCallbackPath)
		fmt.Fprintf(a.Stdout, "  sso:   %s (register the redirect URL %s there)\n", o.OIDC.Issuer, redirect)
	}
	if strings.Contains(os.Args[0], "go-build") {
		// go run's binary is gone once it exits, and on no PATH.
		fmt.Fprintf(a.Stdout, "  cli:   a dspool command for the lines above: go build -o dspool ./cmd/dspool (or go install ./cmd/dspool)\n")
	}
	fmt.Fprintf(a.Stdout, "Press Ctrl-C to stop.\n")
	<-ctx.Done()
	fmt.Fprintln(a.Stderr, "stopping agents and their jobs...")
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.KillGrace)+30*time.Second)
	prov.Stop(sctx)
	cancel()
	stopServing()
	<-served
	return nil
}

// localTestHooks, nil but in a binary built for the end-to-end tests (the
// build tag dspool_testhooks), sets the local provider's test hooks.
var localTestHooks func(*local.Options)

// resumeLocal starts again the agents of local pools' nodes from the last
// run, which kept their state, or adopts those still running, and retires
// the nodes that have none.
func resumeLocal(ctx context.Context, db *store.DB, prov *local.Provider, data string, log *slog.Logger) error {
	pools, err := db.Pools(ctx)
	if err != nil {
		return err
	}
	for _, pool := range pools {
		if pool.Provider.Name != dspool.ProviderLocal {
			continue
		}
		nodes, err := db.Nodes(ctx, pool.Name, false)
		if err != nil {
			return err
		}
		var names []string
		for _, n := range nodes {
			if _, err := os.Stat(filepath.Join(data, "agents", n.Name, "node.json")); err != nil {
				log.Info("retiring a node of a local pool that left no state", "pool", pool.Name, "node", n.Name)
				_, _ = db.RetireNode(ctx, pool.Name, n.Name)
				continue
			}
			names = append(names, n.Name)
		}
		if len(names) > 0 {
			if err := prov.Resume(pool, names); err != nil {
				return err
			}
		}
	}
	return nil
}

// defaultPool creates the pool "default", sized from this machine, on a
// new store. --nodes given again changes its count, and its node size with
// it while that is a size up gives (an equal part of the machine for some
// count): a size an admin set with `dspool pool apply` is theirs and kept.
// Local pools that advertise more than the machine has are warned of.
func (a *App) defaultPool(ctx context.Context, db *store.DB, nodes int, nodesSet bool, log *slog.Logger) error {
	m := thisMachine()
	pools, err := db.Pools(ctx)
	if err != nil {
		return err
	}
	if len(pools) == 0 {
		p := &dspool.Pool{Name: dspool.DefaultPool, Provider: dspool.Provider(dspool.ProviderLocal), Node: m.share(nodes), Count: nodes}
		if err := p.Normalize(""); err != nil {
			return err
		}
		pools = []*dspool.Pool{p}
		if _, err := db.PutPool(ctx, p); err != nil {
			return err
		}
	}
	for _, p := range pools {
		if !nodesSet || p.Name != dspool.DefaultPool || p.Provider.Name != dspool.ProviderLocal {
			continue
		}
		size := p.Node
		if m.upSized(size) {
			size = m.share(nodes)
		}
		if p.Count == nodes && p.Node == size {
			continue
		}
		if p.Autoscale != nil && p.Count != nodes {
			return dspool.Invalid("--nodes", "pool %s autoscales: its size follows its work; drop --nodes, or change autoscale.min/max with `dspool pool apply`", p.Name)
		}
		p.Count, p.Node = nodes, size
		if _, err := db.PutPool(ctx, p); err != nil {
			return err
		}
	}
	if why := m.oversized(pools); why != "" {
		log.Warn(why)
	}
	return nil
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
		// Reused only while it is whole: not revoked, not expiring, every
		// scope.
		if u, t, err := p.db.TokenByHash(ctx, server.HashSecret(c.Token)); err == nil && u.ID == admin.ID &&
			t.RevokedAt == nil && t.ExpiresAt == nil && len(t.Scopes) == len(dspool.Scopes) {
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
	var file, storeURL string
	var proxies, advertise []string
	var keep retentionFlags
	c := &cobra.Command{
		Use:   "server --config FILE",
		Short: "Run the control plane alone (agents join from other machines)",
		Long: `Run the control plane alone. The config file (YAML):

  listen: 0.0.0.0:8080
  ssh_listen: 0.0.0.0:2222   # the SSH gateway; "off" to disable
  ssh_ciphers: [aes128-gcm@openssh.com, aes256-gcm@openssh.com]   # the default
  ssh_password_auth: false   # true: users with a password (dspool user passwd) may log in with it
  max_conns_per_address: 256   # API connections one address (an IPv6 /64) may hold; agents' do not count
  trusted_proxies: [10.0.0.0/8, 192.168.1.5]   # load balancers whose X-Forwarded-For/Proto/Host are believed (docs/guide.md)
  advertise: [pool.example.com, 10.0.0.1]   # names agents and users reach it by (default: this machine's name and addresses);
                             # machines a provider starts (Slurm) dial the first
  # HTTPS by default, with a CA of its own made at first start in DATA/tls
  # (join tokens carry its pin); or bring a certificate:
  tls_cert: /etc/dspool/tls.crt
  tls_key: /etc/dspool/tls.key
  insecure_http: false       # true: plain HTTP, on a loopback listen address only
  data: /var/lib/dspool      # keys, certificates and (without store) the SQLite store
  store: postgres://dspool@db.example.com/dspool  # or none: DATA/dspool.db (PGPASSWORD or PGPASSFILE for the password)
  share: /mnt/dspool         # where this machine mounts the share (to read job logs)
  admin: admin               # first admin, created on a new store
  node_grace: 30s
  node_gone_after: 10m       # a node lost this long is gone (it comes back if its agent does)
  kill_grace: 10s
  heartbeat: 2s              # agents' heartbeat interval
  fair_share_half_life: 168h # a second of use counts half in fair share after this
  reserve_after: 10m         # a job waiting this long reserves the node it needs
  uid_base: 20000            # first uid/gid of users on a new store
  oidc:                      # single sign-on on the web page (docs/guide.md)
    issuer: https://sso.example.com/realms/lab
    client_id: dspool
    client_secret_file: /etc/dspool/oidc-secret   # or DSPOOL_OIDC_CLIENT_SECRET
    claim: email             # a verified email recorded with dspool user email
    password_login: true
` + retentionConfigHelp + `
On a new store it creates the first admin and writes its API token to
DATA/admin-token (mode 0600).`,
		Example: "  dspool server --config /etc/dspool/server.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.guardProcess(); err != nil {
				return err
			}
			if file == "" {
				return dspool.Invalid("--config", "give the server's config file")
			}
			b, err := readLimited(file, 1<<20)
			if err != nil {
				return err
			}
			js, err := yamljson.Convert(b, yamljson.Limits{})
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
			if err := checkStoreFlag(storeURL); err != nil {
				return err
			}
			if storeURL != "" {
				o.Store = storeURL
			}
			if o.Store != "" {
				if err := checkStore(o.Store); err != nil {
					return dspool.Invalid("store", "%s: %v", file, err)
				}
			}
			o.TrustedProxies = append(o.TrustedProxies, proxies...)
			o.Advertise = append(o.Advertise, advertise...)
			keep.apply(cmd, &o.Retention)
			return a.serve(cmd.Context(), o)
		},
	}
	c.Flags().StringVar(&file, "config", "", "server config file (YAML)")
	storeFlag(c, &storeURL)
	c.Flags().Var((*proxiesFlag)(&proxies), "trusted-proxy", trustedProxyHelp+", besides the config's trusted_proxies; repeat for more")
	c.Flags().StringSliceVar(&advertise, "advertise", nil, "names and addresses agents and users reach the API by, besides the config's advertise")
	keep.add(c)
	return c
}

func (a *App) serve(ctx context.Context, o planeOptions) error {
	a.tuneGC()
	log := logger(os.Stderr)
	o.getenv = a.Getenv
	kinds, err := a.kinds()
	if err != nil {
		return err
	}
	var lost atomic.Bool
	if o.Store != "" {
		if o.lead, err = awaitLead(ctx, o, log); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while standing by
			}
			return err
		}
		// The lease is kept from now on, while the control plane starts.
		var stop context.CancelFunc
		ctx, stop = context.WithCancel(ctx)
		defer stop()
		go o.lead.keep(ctx, log, func() { lost.Store(true); stop() })
	}
	p, err := startPlane(ctx, o, kinds, log)
	if err != nil {
		if o.lead != nil {
			o.lead.db.Close()
		}
		if lost.Load() {
			return errLostLead
		}
		return err
	}
	if err := p.startProviders(kinds, o, log); err != nil {
		p.close()
		return err
	}
	admin, created, err := ensureAdmin(ctx, p.db, o.Admin, nil, false)
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
	login := p.url
	if u, err := url.Parse(p.url); err == nil && len(o.Advertise) > 0 {
		u.Host = net.JoinHostPort(o.Advertise[0], u.Port())
		login = u.String()
		fmt.Fprintf(a.Stdout, "agents and users reach it at %s\n", login)
	}
	if p.pin != "" {
		fmt.Fprintf(a.Stdout, "its CA: %s (join tokens carry it; users compare it when `dspool login` asks)\n", p.pin)
		if path := filepath.Join(o.Data, "admin-token"); fileExists(path) {
			fmt.Fprintf(a.Stdout, "log in as the admin from another machine: dspool login %s --ca-hash %s < %s (the file copied there)\n", login, p.pin, path)
		}
	}
	p.serve(ctx)
	if lost.Load() {
		return errLostLead
	}
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

// defaultShareDir is where `dspool up` keeps the share: beside the data
// directory, never in it, so that a user who fills the share cannot stop
// the store (see docs/decisions/0009); /srv/dspool for root's default data
// directory. A share that an earlier dspool made inside the data directory
// and that holds files stays in use (inside is true), so an installation
// keeps its homes.
func defaultShareDir(data string, root bool) (share string, inside bool) {
	legacy := filepath.Join(data, "share")
	if entries, err := os.ReadDir(legacy); err == nil && len(entries) > 0 {
		return legacy, true
	}
	if root {
		return "/srv/dspool", false
	}
	return filepath.Clean(data) + "-share", false
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
