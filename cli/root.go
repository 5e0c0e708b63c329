// Package cli is the dspool command line: one cobra command tree shared by
// users (job, pool, node, user, token) and operators (up, server, agent).
// It talks to the control plane only through the api client.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dspool/dspool/autoscale"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/atomicfile"
	"github.com/spf13/cobra"
)

// Version is set at build time.
var Version = "dev"

// App carries what every command needs; tests build one with their own
// writers and environment.
type App struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	Getenv         func(string) string
	// Environ is the whole environment, for job submit --export-all
	// (default os.Environ).
	Environ func() []string
	// Providers are the provider kinds this binary runs besides local and
	// static, registered by cmd/dspool (e.g. slurm).
	Providers []autoscale.Kind

	server, token, output, configPath string
	// tokenFrom says where the token of client() came from; "" before.
	tokenFrom string
	// process is set when the App is the dspool process itself (Main), not
	// a caller in the same process: only then does it tune the Go runtime
	// and handle signals.
	process bool
	// stopSignals ends the signal handling of the command that runs.
	stopSignals context.CancelFunc
}

// Config is the CLI's saved login, written by `dspool up` (mode 0600).
type Config struct {
	Server string `json:"server"`
	Token  string `json:"token"`
	// CA is a PEM file of certificates to trust for an https server,
	// beyond the system's.
	CA string `json:"ca,omitempty"`
}

// Main runs the CLI with args and returns the process exit code; the
// control plane it runs knows the provider kinds given besides local and
// static.
func Main(ctx context.Context, args []string, providers ...autoscale.Kind) int {
	app := &App{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Getenv: os.Getenv, process: true, Providers: providers}
	return app.Run(ctx, args)
}

// ExitError makes the process exit with Code after printing nothing more.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Run runs one command line.
func (a *App) Run(ctx context.Context, args []string) int {
	var name string
	if len(args) > 0 {
		name = args[0]
	}
	root := a.root(name)
	root.SetArgs(args)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	err := root.ExecuteContext(ctx)
	if a.stopSignals != nil {
		a.stopSignals()
		a.stopSignals = nil
	}
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	fmt.Fprintln(a.Stderr, "dspool: "+a.explain(err))
	return 1
}

// explain adds to a refused credential which token the CLI sent, which the
// server cannot know: the server's message already says what to do about
// that token.
func (a *App) explain(err error) string {
	var e *dspool.Error
	if !errors.As(err, &e) || e.Code != dspool.EUnauthorized || a.tokenFrom == "" || a.tokenFrom == tokenFromNone {
		return err.Error()
	}
	return err.Error() + " (the token sent was " + a.tokenFrom + ")"
}

// withFlags names, in an error about a field of an API request, the flag
// the user typed instead: fields maps "expires_at" to "--expires". A field
// inside a list item ("scopes[1]") maps by the list's name.
func withFlags(err error, fields map[string]string) error {
	var e *dspool.Error
	if !errors.As(err, &e) || e.Field == "" {
		return err
	}
	field := e.Field
	if i := strings.IndexAny(field, "[."); i > 0 {
		field = field[:i]
	}
	flag, ok := fields[field]
	if !ok {
		return err
	}
	named := *e
	named.Field = flag
	return &named
}

// Where the token the CLI sends came from, for explain. With none, the
// server's answer says how to give one.
const (
	tokenFromNone   = "none"
	tokenFromFlag   = "that of --token"
	tokenFromEnv    = "DSPOOL_TOKEN"
	tokenFromConfig = "the saved login's, in "
)

// Root builds the whole command tree.
func (a *App) Root() *cobra.Command { return a.root("") }

// root builds the command tree; when name is that of a top-level command,
// with that command's branch alone: a command line pays for building its
// own command's flags and subcommands, not those of every other (decision
// 0038). Help, completion and a mistyped name get the whole tree.
func (a *App) root(name string) *cobra.Command {
	root := &cobra.Command{
		Use:   "dspool",
		Short: "A self-hosted shared compute pool for data-science teams",
		Long: `dspool runs a team's batch jobs and interactive sessions on a shared pool of
CPU and GPU machines, with one front-end address and one shared store.

Start everything on this machine with ` + "`dspool up`" + `, then submit work from
another terminal with ` + "`dspool job submit -- COMMAND`" + `.`,
		Example:       "  dspool up\n  dspool job submit --wait -- echo hello",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			if cmd.Annotations[noSignals] == "" {
				var ctx context.Context
				ctx, a.stopSignals = a.withSignals(cmd.Context())
				cmd.SetContext(ctx)
			}
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", "", "control plane URL (default: DSPOOL_SERVER, then the saved login)")
	pf.StringVar(&a.token, "token", "", "API token (default: DSPOOL_TOKEN, then the saved login)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&a.configPath, "config-file", "", "CLI login file (default: DSPOOL_CONFIG, then $XDG_CONFIG_HOME/dspool/config.json)")
	cmds := a.commands()
	if i := slices.IndexFunc(cmds, func(c command) bool { return c.name == name }); i >= 0 {
		cmds = cmds[i : i+1]
		// Nor is `completion` what the command line asks for.
		root.CompletionOptions.DisableDefaultCmd = true
	}
	for _, c := range cmds {
		root.AddCommand(c.build())
	}
	refuseUnknownSubcommands(root)
	return root
}

// noSignals marks a command that ends within a request or two: at SIGINT
// or SIGTERM its process may end as any program's does, so it installs no
// handler, whose goroutine and thread cost about a millisecond of CPU at
// each start (decision 0038). Such a command that goes on to wait (job
// submit --wait) calls withSignals itself.
const noSignals = "dspool/no-signals"

// withSignals returns ctx, cancelled at SIGINT or SIGTERM when the App is
// the process, so that the command stops cleanly: a control plane closes
// its store, a wait restores the terminal.
func (a *App) withSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	if !a.process {
		return context.WithCancel(ctx)
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// command is a top-level command: its name and what builds it with its
// subcommands.
type command struct {
	name  string
	build func() *cobra.Command
}

// commands are the top-level commands.
func (a *App) commands() []command {
	return []command{
		{"up", a.upCmd}, {"server", a.serverCmd}, {"agent", a.agentCmd}, {"watchdog", a.agentWatchdogCmd},
		{"gateway", a.gatewayCmd}, {"sftp-server", a.sftpServerCmd}, {"backup", a.backupCmd}, {"restore", a.restoreCmd},
		{"job", a.jobCmd}, {"queue", a.queueCmd}, {"schedule", a.scheduleCmd}, {"pool", a.poolCmd}, {"node", a.nodeCmd},
		{"session", a.sessionCmd}, {"shell", a.shellCmd}, {"notebook", a.notebookCmd}, {"share", a.shareCmd},
		{"user", a.userCmd}, {"team", a.teamCmd}, {"token", a.tokenCmd}, {"key", a.keyCmd}, {"secret", a.secretCmd},
		{"login", a.loginCmd}, {"usage", a.usageCmd}, {"audit", a.auditCmd}, {"simulate", a.simulateCmd},
		{"version", a.versionCmd},
	}
}

// refuseUnknownSubcommands makes a command that only groups others (`dspool
// job`) refuse an argument that names none of them, with what was meant,
// rather than print its help and succeed: a typo (`dspool job sumbit`)
// must not pass for done in a script.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c == c.Root() || !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(": did you mean %q?", strings.Join(s, `" or "`))
		}
		return fmt.Errorf("%s (see `%s --help`)", msg, cmd.CommandPath())
	}
}

func (a *App) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the version", Args: cobra.NoArgs,
		Example:     "  dspool version",
		Annotations: map[string]string{noSignals: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(a.Stdout, "dspool", Version)
			return nil
		},
	}
}

func (a *App) defaultConfigPath() string {
	if a.configPath != "" {
		return a.configPath
	}
	if p := a.Getenv("DSPOOL_CONFIG"); p != "" {
		return p
	}
	dir := a.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "dspool", "config.json")
}

func (a *App) loadConfig() Config {
	var c Config
	if b, err := os.ReadFile(a.defaultConfigPath()); err == nil {
		_ = json.Unmarshal(b, &c)
	}
	return c
}

func (a *App) saveConfig(c Config) (string, error) {
	p := a.defaultConfigPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := atomicfile.Write(p, b, 0o600); err != nil {
		return "", fmt.Errorf("save the CLI login: %w", err)
	}
	return p, nil
}

// client returns an API client: flags, then the environment, then the saved
// login.
func (a *App) client() (*api.Client, error) {
	c := a.loadConfig()
	server := firstOf(a.server, a.Getenv("DSPOOL_SERVER"), c.Server)
	token := firstOf(a.token, a.Getenv("DSPOOL_TOKEN"), c.Token)
	switch {
	case a.token != "":
		a.tokenFrom = tokenFromFlag
	case a.Getenv("DSPOOL_TOKEN") != "":
		a.tokenFrom = tokenFromEnv
	case c.Token != "":
		a.tokenFrom = tokenFromConfig + a.defaultConfigPath()
	default:
		a.tokenFrom = tokenFromNone
	}
	if server == "" {
		return nil, fmt.Errorf("no server to talk to: no CLI login in %s%s; start a pool with `dspool up` (it logs this machine's CLI in), log in to one with `dspool login URL`, or pass --server URL (or DSPOOL_SERVER)",
			a.defaultConfigPath(), loginFileFrom(a))
	}
	cl := &api.Client{Server: server, Token: token}
	var told sync.Once
	cl.Busy = func(wait time.Duration) {
		told.Do(func() {
			fmt.Fprintf(a.Stderr, "dspool: the server is busy (too many connections from this address); trying again in %s\n", wait.Round(100*time.Millisecond))
		})
	}
	if ca := firstOf(a.Getenv("DSPOOL_CA"), c.CA); ca != "" {
		h, err := api.NewHTTPClient(ca)
		if err != nil {
			return nil, fmt.Errorf("DSPOOL_CA: %w", err)
		}
		cl.HTTP = h
	}
	return cl, nil
}

// loginFileFrom says where the login file's name came from, for messages.
func loginFileFrom(a *App) string {
	switch {
	case a.configPath != "":
		return " (--config-file)"
	case a.Getenv("DSPOOL_CONFIG") != "":
		return " (DSPOOL_CONFIG; unset it for the default)"
	}
	return " (set DSPOOL_CONFIG to use another)"
}

func firstOf(xs ...string) string {
	for _, x := range xs {
		if x != "" {
			return x
		}
	}
	return ""
}

func (a *App) json() (bool, error) {
	switch a.output {
	case "json":
		return true, nil
	case "table", "":
		return false, nil
	}
	return false, dspool.Invalid("--output", "%q is not an output format: use table or json", a.output)
}

// print writes v as JSON with -o json, else as a table from rows.
func (a *App) print(v any, header []string, rows func(add func(...any))) error {
	asJSON, err := a.json()
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(a.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	rows(func(cols ...any) {
		s := make([]string, len(cols))
		for i, c := range cols {
			s[i] = sanitize(fmt.Sprint(c))
		}
		fmt.Fprintln(tw, strings.Join(s, "\t"))
	})
	return tw.Flush()
}

// sanitize makes text from users safe to show on a terminal: control
// characters (escape sequences among them) are shown, not obeyed.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// args checks a command's positional arguments and, when they are wrong,
// says what to give with an example, instead of cobra's "accepts 1 arg(s)".
func args(min, max int, what, example string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		if len(got) >= min && (max < 0 || len(got) <= max) {
			return nil
		}
		if max == 0 {
			return fmt.Errorf("%s takes no arguments (got %q); e.g. %s", cmd.CommandPath(), strings.Join(got, " "), example)
		}
		if len(got) < min {
			return fmt.Errorf("%s needs %s; e.g. %s", cmd.CommandPath(), what, example)
		}
		return fmt.Errorf("%s takes only %s (got %d arguments); e.g. %s", cmd.CommandPath(), what, len(got), example)
	}
}

// tuneGC makes the long-running processes (control plane, agents) collect
// garbage less often: bulk SSH traffic allocates a packet at a time, and the
// default (GOGC=100) spends a fifth of the gateway's CPU collecting it. The
// heap of these processes is small, so 4x its live size is still little.
// GOGC in the environment wins.
func (a *App) tuneGC() {
	if a.process && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// shareCPUs runs the Go code of `dspool up`'s control plane, and of an
// agent, on half of the CPUs the process may use (at least one): the rest
// are for the nodes' work, which runs on the same machine. With every CPU,
// the goroutines of a bulk SSH transfer (the gateway's, and an agent's
// copying a session's stdin off the TLS link) hand each chunk to threads
// woken on other CPUs, the ones the SSH client, the session's process and
// the other hops are using: on 2 CPUs a bulk SSH transfer through the
// gateway went 1.6 times as fast with one (decision 0008), and one over
// the TLS link spent 9-14% less cpu per GiB with an agent on one
// (decision 0035). GOMAXPROCS in the environment wins.
func (a *App) shareCPUs() {
	if a.process && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)/2))
	}
}

// progress is a line that updates in place on a terminal (and says nothing
// elsewhere): "waiting for a node in pool gpu: job 3 queued, 14 s".
type progress struct {
	w       io.Writer
	tty     bool
	mu      sync.Mutex
	last    string
	stopped bool
}

func (a *App) progress() *progress { return &progress{w: a.Stderr, tty: isTerminal(a.Stderr)} }

func (p *progress) update(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && !p.stopped {
		p.last = line
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	}
}

// done clears the line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.last = ""
	}
}

// stop clears the line for good: other output follows on the terminal.
func (p *progress) stop() {
	p.done()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}
