package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/fairshare"
	"github.com/dspool/dspool/gateway/sshgw"
	"github.com/dspool/dspool/internal/atomicfile"
	"github.com/dspool/dspool/internal/forwarded"
	"github.com/dspool/dspool/secrets"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/store"
	"github.com/spf13/cobra"
)

// planeOptions are the settings `up` and `server` share.
type planeOptions struct {
	Listen    string `json:"listen"`
	SSHListen string `json:"ssh_listen"`
	// SSHCiphers are the gateway's ciphers (default AES-GCM only).
	SSHCiphers []string `json:"ssh_ciphers"`
	// SSHPasswordAuth allows password logins at the gateway.
	SSHPasswordAuth bool `json:"ssh_password_auth"`
	// MaxConnsPerAddress bounds the API's connections from one address
	// (default server.MaxConnsPerSource); agents' connections do not count.
	MaxConnsPerAddress int `json:"max_conns_per_address"`
	// TrustedProxies are the load balancers (addresses or networks) whose
	// X-Forwarded-For/Proto/Host headers are believed; no one's by default.
	TrustedProxies []string `json:"trusted_proxies"`
	// TLSCert and TLSKey (PEM files) serve the API over HTTPS.
	TLSCert string `json:"tls_cert"`
	TLSKey  string `json:"tls_key"`
	// Advertise are the names and addresses agents and users reach the
	// control plane by, which its own certificate names (default: this
	// machine's name and addresses).
	Advertise []string `json:"advertise"`
	// InsecureHTTP serves plain HTTP instead of HTTPS, on loopback only.
	InsecureHTTP bool   `json:"insecure_http"`
	Data         string `json:"data"`
	// Store is where the store is: a postgres:// URL, or "" for the SQLite
	// file DATA/dspool.db.
	Store     string          `json:"store"`
	Share     string          `json:"share"`
	NodeGrace dspool.Duration `json:"node_grace"`
	// NodeGoneAfter is how long a node stays lost before it is gone.
	NodeGoneAfter dspool.Duration `json:"node_gone_after"`
	KillGrace     dspool.Duration `json:"kill_grace"`
	Heartbeat     dspool.Duration `json:"heartbeat"`
	// FairShareHalfLife and ReserveAfter order the queue (server.Config's
	// FairShare).
	FairShareHalfLife dspool.Duration `json:"fair_share_half_life"`
	ReserveAfter      dspool.Duration `json:"reserve_after"`
	Admin             string          `json:"admin"`
	UIDBase           int             `json:"uid_base"`
	// OIDC is single sign-on for the web page (off without an issuer).
	OIDC oidcOptions `json:"oidc"`
	// Retention is how long the store keeps what has ended.
	Retention dspool.Retention `json:"retention"`
	// getenv reads the environment, and the secrets guardProcess moved
	// out of it.
	getenv func(string) string
	// lead is the lease this control plane leads under, with its store
	// (PostgreSQL; nil for none).
	lead *leadership
}

func (o *planeOptions) flags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.Listen, "listen", o.Listen, "address to serve the API on")
	f.StringVar(&o.SSHListen, "ssh-listen", o.SSHListen, "address of the SSH gateway (ssh USER@HOST -p PORT lands on a node); off to disable")
	f.StringVar(&o.TLSCert, "tls-cert", "", "certificate (PEM) to serve the API over HTTPS, with --tls-key")
	f.StringVar(&o.TLSKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringSliceVar(&o.Advertise, "advertise", nil, "names and addresses agents and users reach the API by, for its certificate (default: this machine's name and addresses)")
	f.BoolVar(&o.InsecureHTTP, "insecure-http", false, "serve plain HTTP instead of HTTPS: development on loopback only")
	f.IntVar(&o.MaxConnsPerAddress, "max-conns-per-address", o.MaxConnsPerAddress, "connections to the API one address (an IPv6 /64) may hold at once; agents' do not count (default 256)")
	f.Var((*proxiesFlag)(&o.TrustedProxies), "trusted-proxy", trustedProxyHelp+"; repeat for more (default none)")
	f.BoolVar(&o.SSHPasswordAuth, "ssh-password-auth", false, "allow SSH logins by password (set with dspool user passwd); keys only by default")
	f.StringSliceVar(&o.SSHCiphers, "ssh-ciphers", nil, "ciphers the SSH gateway offers (default aes128-gcm@openssh.com,aes256-gcm@openssh.com)")
	f.Var((*durationFlag)(&o.NodeGrace), "node-grace", "how long a node may be silent before it takes no new work and its agent, if cut off, stops its attempts; they are retried after this, the kill grace and a margin (default 30s)")
	f.Var((*durationFlag)(&o.NodeGoneAfter), "node-gone-after", "how long a node stays lost before it is gone, with a node_gone event (default 10m)")
	f.Var((*durationFlag)(&o.KillGrace), "kill-grace", "time between SIGTERM and SIGKILL when a job is cancelled or times out (default 10s)")
	f.Var((*durationFlag)(&o.Heartbeat), "heartbeat", "agent heartbeat interval (default 2s)")
	f.Var((*durationFlag)(&o.FairShareHalfLife), "fair-share-half-life", "how long until a second of a user's or team's use counts half in their fair share (default 168h)")
	f.Var((*durationFlag)(&o.ReserveAfter), "reserve-after", "how long a queued job waits before it goes first and reserves the node it needs, which smaller jobs then use only if they end before it starts (default 10m)")
	f.IntVar(&o.UIDBase, "uid-base", 0, "first uid/gid given to users on a new store (default 20000)")
	storeFlag(c, &o.Store)
	o.OIDC.flags(c)
}

// storeFlag is --store, the store's PostgreSQL database.
func storeFlag(c *cobra.Command, v *string) {
	c.Flags().Var((*storeValue)(v), "store", "the store: a postgres:// URL of a database of its own (password in PGPASSWORD or a pgpass file, PGPASSFILE); default the SQLite file DATA/dspool.db")
}

// storeValue is --store. It is checked by checkStoreFlag, whose errors do
// not repeat it, as flag errors do.
type storeValue string

func (v *storeValue) String() string { return store.Redact(string(*v)) }
func (v *storeValue) Type() string   { return "url" }
func (v *storeValue) Set(s string) error {
	*v = storeValue(s)
	return nil
}

// checkStoreFlag checks --store: a PostgreSQL URL with no password in it,
// as a command line is seen by everyone on the machine (ps).
func checkStoreFlag(s string) error {
	if s == "" {
		return nil
	}
	if err := checkStore(s); err != nil {
		return dspool.Invalid("--store", "%v", err)
	}
	if store.Redact(s) != s {
		return dspool.Invalid("--store", "a password on the command line is seen by everyone on this machine (ps): give it in PGPASSWORD, or in a pgpass file (PGPASSFILE), or in the server config's store")
	}
	return nil
}

// checkStore checks a store's URL before anything is started.
func checkStore(s string) error {
	if !store.IsPostgres(s) {
		return fmt.Errorf("%q is not a postgres:// URL: give one, e.g. postgres://dspool@db.example.com/dspool, or leave it out for the SQLite file in the data directory", store.Redact(s))
	}
	if _, err := url.Parse(s); err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	return nil
}

const trustedProxyHelp = "a load balancer (address or network, e.g. 10.0.0.0/8) whose X-Forwarded-For/Proto/Host headers are believed"

// proxiesFlag is --trusted-proxy: repeatable, each value checked as it is
// given, so that the error names the flag.
type proxiesFlag []string

func (f *proxiesFlag) String() string { return strings.Join(*f, ",") }
func (f *proxiesFlag) Set(v string) error {
	if _, err := forwarded.Parse("--trusted-proxy", []string{v}); err != nil {
		var e *dspool.Error
		if errors.As(err, &e) {
			return errors.New(e.Message)
		}
		return err
	}
	*f = append(*f, v)
	return nil
}
func (f *proxiesFlag) Type() string { return "address" }

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
	db   *store.DB
	srv  *server.Server
	http *http.Server
	url  string
	ln   net.Listener
	// agentURL is where local agents reach the control plane: the API
	// address, or a plain loopback one (agentLn) when the API is HTTPS.
	agentURL string
	agentLn  net.Listener
	// ca is the certificate file the CLI login trusts (the API's own);
	// pin is its CA's pin, which join tokens carry.
	ca, pin string
	ssh     *sshgw.Gateway
	sshLn   net.Listener
	admin   *dspool.User
	lock    *os.File
}

func startPlane(ctx context.Context, o planeOptions, kinds *autoscale.Registry, log *slog.Logger) (*plane, error) {
	sshOn := o.SSHListen != "" && o.SSHListen != "off"
	if o.MaxConnsPerAddress < 0 {
		return nil, dspool.Invalid("max_conns_per_address", "%d is negative: give a number of connections, or 0 for the default (%d)", o.MaxConnsPerAddress, server.MaxConnsPerSource)
	}
	// Agents cut off for the node grace stop their attempts: a grace of a
	// few heartbeats would have them stop their work at a slow heartbeat.
	grace, beat := cmp.Or(time.Duration(o.NodeGrace), 30*time.Second), cmp.Or(time.Duration(o.Heartbeat), 2*time.Second)
	if grace < 3*beat {
		return nil, dspool.Invalid("node_grace", "a node grace of %s is under three heartbeats (%s each): agents would stop their attempts at a late heartbeat; give --node-grace of at least %s", grace, beat, 3*beat)
	}
	if sshOn {
		if err := sshgw.CheckCiphers("ssh_ciphers", o.SSHCiphers); err != nil {
			return nil, err
		}
	}
	if o.getenv == nil {
		o.getenv = os.Getenv
	}
	oidc, err := o.OIDC.config(o.getenv)
	if err != nil {
		return nil, err
	}
	proxies, err := forwarded.Parse("trusted_proxies", o.TrustedProxies)
	if err != nil {
		return nil, err
	}
	if err := checkRetention(o.Retention, log); err != nil {
		return nil, err
	}
	// The data directory is traversable but not listable: jobs running as
	// their users must reach a share that an earlier dspool made inside it
	// (docs/decisions/0009); the store file is 0600.
	if err := os.MkdirAll(o.Data, 0o711); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lock, err := lockDir(o.Data)
	if err != nil {
		return nil, err
	}
	link, err := o.serverTLS()
	if err != nil {
		lock.Close()
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
	where := o.Store
	if where == "" {
		where = filepath.Join(o.Data, "dspool.db")
	}
	var db *store.DB
	if o.lead != nil {
		db = o.lead.db
	} else if db, err = store.Open(ctx, where, store.Options{UIDBase: o.UIDBase}); err != nil {
		return fail(err)
	}
	if o.Store == "" {
		for _, f := range []string{where, where + "-wal", where + "-shm"} {
			_ = os.Chmod(f, 0o600)
		}
	} else {
		log.Info("the store is a PostgreSQL database", "store", store.Redact(where))
	}
	if o.UIDBase != 0 {
		if base, err := db.UIDBase(ctx); err == nil && base != o.UIDBase {
			db.Close()
			return fail(dspool.Invalid("uid_base", "the store in %s was made with uid base %d, and its users keep their uids: drop --uid-base (uid_base), or give a new --data for a new store", o.Data, base))
		}
	}
	keys, err := secretsKeyring(ctx, db, o.Data, o.getenv(secrets.EnvVar), log)
	if err != nil {
		db.Close()
		return fail(err)
	}
	workKey, err := workTokenKey(o.Data)
	if err != nil {
		db.Close()
		return fail(err)
	}
	_, marked := share.ReadID(o.Share)
	shareID, err := share.EnsureID(o.Share)
	if err == nil {
		err = claimShare(ctx, db, o.Share, shareID, marked == nil)
	}
	if err == nil {
		err = share.Layout(o.Share)
	}
	if err != nil {
		db.Close()
		return fail(err)
	}
	// The pool's SSH host key, which SSH gateways of their own process
	// (`dspool gateway`) take from the control plane, so that every
	// gateway presents the same.
	hostKeyFile := filepath.Join(o.Data, "ssh_host_ed25519_key")
	key, err := sshgw.LoadOrCreateHostKey(hostKeyFile)
	var hostKey []byte
	if err == nil {
		hostKey, err = os.ReadFile(hostKeyFile)
	}
	if err != nil {
		db.Close()
		return fail(err)
	}
	srv := server.New(server.Config{Kinds: kinds, JoinURL: joinURL(o, ln, link.cert != nil), SSHHostKey: hostKey, SSHCiphers: o.SSHCiphers, SSHPasswordAuth: o.SSHPasswordAuth, Store: db, Share: o.Share, ShareID: shareID, CAPin: link.pin, Logger: log, NodeGrace: time.Duration(o.NodeGrace),
		NodeGoneAfter: time.Duration(o.NodeGoneAfter), KillGrace: time.Duration(o.KillGrace), Heartbeat: time.Duration(o.Heartbeat), Version: Version, OIDC: oidc, Secrets: keys,
		TrustedProxies: proxies, WorkTokenKey: workKey, LeaderTerm: o.lead.termOf(), Retention: o.Retention, SSHAddress: listenAddr(sln),
		FairShare: fairshare.Config{HalfLife: time.Duration(o.FairShareHalfLife), ReserveAfter: time.Duration(o.ReserveAfter)}})
	if len(proxies) > 0 {
		log.Info("X-Forwarded-For, -Proto and -Host are believed from the trusted proxies alone", "trusted_proxies", proxies)
	}
	var tlsConfig *tls.Config
	if link.cert != nil {
		// HTTP/1.1 only (no h2 in NextProtos): agent connections upgrade.
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{*link.cert}, MinVersion: tls.VersionTLS12}
	}
	// A connection past its address's limit is told to come back later.
	ln = server.LimitListener(ln, server.Limits{PerSource: o.MaxConnsPerAddress, Logger: log, Busy: server.BusyAnswer(tlsConfig)})
	p := &plane{db: db, srv: srv, ln: ln, http: server.NewHTTPServer(srv.Handler(), log), lock: lock}
	scheme := "http"
	if tlsConfig != nil {
		p.ln = tls.NewListener(server.RedirectPlainHTTP(ln), tlsConfig)
		scheme = "https"
		p.ca, p.pin = link.caFile, link.pin
	}
	if sshOn {
		p.sshLn = sln
		p.ssh = sshgw.New(sshgw.Config{HostKey: key, Backend: sshgw.ServerBackend(srv), Logger: log, Ciphers: o.SSHCiphers,
			PasswordAuth: o.SSHPasswordAuth})
		log.Info("ssh gateway listening", "addr", sln.Addr().String(), "host_key", key.Fingerprint(),
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
// traffic never leaves the machine). The port is kept in
// DATA/local-agents.addr and taken again by the next run: the agents a
// crashed run left behind dial it to find the run that adopts them.
func (p *plane) localAgents(data string, log *slog.Logger) error {
	if !strings.HasPrefix(p.url, "https://") {
		return nil
	}
	file := filepath.Join(data, "local-agents.addr")
	var ln net.Listener
	if b, err := os.ReadFile(file); err == nil {
		if ap, err := netip.ParseAddrPort(strings.TrimSpace(string(b))); err == nil && ap.Addr().IsLoopback() {
			if ln, err = net.Listen("tcp", ap.String()); err != nil {
				log.Warn("the local agents' address of the last run is taken: agents still running from then cannot come back, and are replaced", "addr", ap, "err", err)
			}
		}
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("listen on loopback for local agents: %w", err)
		}
		if err := atomicfile.Write(file, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
			log.Warn("the local agents' address is not kept: should this run crash, the next one cannot adopt its agents", "err", err)
		}
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
	p.srv.ShuttingDown()
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

// secretsKeyring loads the key that seals secrets: env (DSPOOL_SECRETS_KEY)
// when set, else DATA/secrets.key, created (mode 0600) while the store holds
// no secret. The variable is also dropped from this process's Go
// environment, so that the agents and setup scripts it starts never see it
// (guardProcess has already kept it out of the environment block).
func secretsKeyring(ctx context.Context, db *store.DB, data, env string, log *slog.Logger) (*secrets.Keyring, error) {
	inUse, err := db.SecretKeyIDs(ctx)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(data, "secrets.key")
	keys, created, err := secrets.Load(secrets.Source{Env: env, File: file}, inUse)
	_ = os.Unsetenv(secrets.EnvVar)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	switch {
	case created:
		log.Info("created the key that seals secrets; back it up apart from the store, which is useless without it", "file", file, "key", keys.KeyID())
	case env != "":
		log.Info("secrets are sealed with the key in "+secrets.EnvVar, "key", keys.KeyID())
	}
	return keys, nil
}

// lockDir takes an exclusive lock on dir (released when the process ends),
// so two control planes never share one store, share and set of local
// agents.
func lockDir(dir string) (*os.File, error) {
	f, holder, err := tryLockDir(dir)
	if holder != "" {
		return nil, fmt.Errorf("another dspool (pid %s) is using %s: stop it first, or give this one its own --data", holder, dir)
	}
	return f, err
}

// tryLockDir takes dir's lock, or says which process holds it (holder,
// with a nil error).
func tryLockDir(dir string) (f *os.File, holder string, err error) {
	f, err = os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, cmp.Or(strings.TrimSpace(string(b)), "?"), nil
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, "", nil
}

// claimShare checks that the share with id is this store's. A share that
// another store marked before (marked) is refused: the one this store
// keeps is another, or this store is new (no user yet) and keeps none; two
// stores on one share would give one uid to two users, and each would
// find the other's files in the way. A share marked only now is new and
// becomes this store's (a store restored beside a new share).
func claimShare(ctx context.Context, db *store.DB, dir, id string, marked bool) error {
	kept, had, err := db.ClaimShare(ctx, id)
	switch {
	case err != nil:
		return err
	case had && kept != id && marked:
		return dspool.Invalid("share", "%s is another store's share (its %s says %s; this store's is %s): give this store its own share (--share), or mount its share there",
			dir, share.IDFile, id, kept)
	case had && kept != id:
		return db.SetShare(ctx, id)
	case !had && marked:
		if users, err := db.Users(ctx); err == nil && len(users) == 0 {
			_ = db.SetShare(ctx, "") // the next start decides again
			return dspool.Invalid("share", "%s is already the share of another store (it has %s), and this store is new: give it a share of its own (--share DIR, a new directory), or start the store that owns it (its --data)",
				dir, share.IDFile)
		}
	}
	return nil
}

// ensureAdmin creates the first admin on a new store, with a uid that none
// of host holds. It returns the admin. local: this machine's agents will
// run the admin's work (dspool up as root).
func ensureAdmin(ctx context.Context, db *store.DB, name string, host []dspool.HostAccount, local bool) (*dspool.User, bool, error) {
	users, err := db.Users(ctx)
	if err != nil {
		return nil, false, err
	}
	for _, u := range users {
		if u.Admin {
			return u, false, nil
		}
	}
	// Local agents as root run the admin's work as an account of that
	// name, made with the admin's uid: one that exists with another uid
	// (Debian's cloud images log in as admin) would stop it all.
	if local {
		if acct, err := user.Lookup(name); err == nil {
			return nil, false, dspool.Invalid("--admin", "an account called %s already exists on this machine (uid %s), and the first admin of a new store gets a uid of its own: "+
				"start the new store with --admin NAME, a name no account on this machine has", name, acct.Uid)
		}
	}
	u, err := db.CreateUserAvoiding(ctx, name, true, host)
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

// joinURL is the address machines a provider starts dial to join: the
// first advertised name, else the listen address (loopback for a wildcard).
func joinURL(o planeOptions, ln net.Listener, https bool) string {
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if len(o.Advertise) > 0 {
		host = o.Advertise[0]
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// listenAddr is where ln listens ("" for none).
func listenAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
