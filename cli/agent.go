package cli

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/internal/agentlock"
	"github.com/spf13/cobra"
)

func (a *App) agentCmd() *cobra.Command {
	var cfg agent.Config
	var cpus, memory string
	var labels []string
	leave := true
	c := &cobra.Command{
		Use:   "agent --server URL --join-token TOKEN --share DIR",
		Short: "Run a node agent: join a pool and run its work on this machine",
		Long: `Run a node agent. It joins the pool of its join token once (keeping the node's
credential in --state), dials out to the server (no inbound port needed), and
runs the jobs placed on this machine. Run it as root so jobs run as their
users, in cgroups.

The join token may also come from DSPOOL_JOIN_TOKEN, which keeps it out of ps.

Stopped on purpose (SIGTERM, Ctrl-C), the agent stops its jobs (they are
retried elsewhere when they allow), tells the server, and the node leaves the
pool at once (state gone); it comes back when the agent starts again with its
--state. A node removed by an admin (dspool node remove) is cut off: its
agent stops its work and exits.`,
		Example: `  dspool agent --server https://pool.example:8080 --join-token $(dspool pool join-token default) --share /mnt/dspool
  dspool agent --server https://10.0.0.1:8080 --join-token dspj_... --pool gpu --gpus 2 --share /mnt/dspool`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.guardProcess(); err != nil {
				return err
			}
			// The lock of the state directory that `dspool up` took for
			// this agent before starting it, if it did.
			lock, err := agentlock.Inherited()
			if err != nil {
				return err
			}
			cfg.StateLock = lock
			if cpus != "" {
				if cfg.CPUs, err = dspool.ParseCPU(cpus); err != nil {
					return dspool.Invalid("--cpus", "%v", err)
				}
			}
			if memory != "" {
				if cfg.Memory, err = dspool.ParseBytes(memory); err != nil {
					return dspool.Invalid("--memory", "%v", err)
				}
			}
			for _, kv := range labels {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return dspool.Invalid("--label", "%q is not K=V", kv)
				}
				if cfg.Labels == nil {
					cfg.Labels = map[string]string{}
				}
				cfg.Labels[k] = v
			}
			if cfg.JoinToken == "" {
				cfg.JoinToken = a.Getenv("DSPOOL_JOIN_TOKEN")
			}
			if cfg.Server == "" {
				cfg.Server = a.Getenv("DSPOOL_SERVER")
			}
			if cfg.ServerCA == "" {
				cfg.ServerCA = a.Getenv("DSPOOL_CA")
			}
			if cfg.DevDir == "" {
				cfg.DevDir = a.Getenv("DSPOOL_GPU_DEV_DIR")
			}
			if cfg.StateDir == "" {
				if os.Geteuid() == 0 {
					cfg.StateDir = "/var/lib/dspool/agent"
				} else {
					dir := a.Getenv("XDG_STATE_HOME")
					if dir == "" {
						home, _ := os.UserHomeDir()
						dir = filepath.Join(home, ".local", "state")
					}
					cfg.StateDir = filepath.Join(dir, "dspool", "agent")
				}
			}
			cfg.StayOnStop = !leave
			a.tuneGC()
			a.shareCPUs()
			cfg.Logger = logger(os.Stderr)
			cfg.Version = Version
			if exe, err := os.Executable(); err == nil {
				cfg.SFTPServer = []string{exe, "sftp-server"}
			}
			// This very binary, even if an upgrade replaced its file.
			cfg.Watchdog = []string{"/proc/self/exe", "watchdog"}
			ag, err := agent.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return ag.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Server, "server", "", "control plane URL (or DSPOOL_SERVER)")
	f.StringVar(&cfg.ServerCA, "server-ca", "", "PEM file of certificates to trust for an https server, beyond the system's (or DSPOOL_CA)")
	f.BoolVar(&cfg.FramedSessions, "framed-sessions", false, "carry SSH sessions' stdin/stdout inside the agent's one connection (slower; for networks that allow an agent one connection)")
	f.StringVar(&cfg.JoinToken, "join-token", "", "join token printed by 'dspool pool join-token POOL' (better: DSPOOL_JOIN_TOKEN, kept out of ps); needed only the first time")
	f.StringVar(&cfg.Pool, "pool", "", "check that the join token is for this pool")
	f.StringVar(&cfg.Name, "name", "", "node name (default: the hostname)")
	f.StringVar(&cfg.StateDir, "state", "", "where the node keeps its identity (default /var/lib/dspool/agent as root)")
	f.StringVar(&cfg.Share, "share", "", "where this machine mounts the pool's share")
	f.StringVar(&cfg.RuntimeDir, "runtime-dir", "", "where jobs' and sessions' secret files live while they run, never on the share (default /run/dspool as root)")
	f.StringVar(&cpus, "cpus", "", "cpus to offer (default: all)")
	f.StringVar(&memory, "memory", "", "memory to offer, e.g. 64GiB (default: all)")
	f.IntVar(&cfg.GPUs, "gpus", -1, "GPUs to offer: the first N that nvidia-smi finds (else N without a model); -1: all it finds")
	f.StringVar(&cfg.DevDir, "gpu-dev-dir", "", "where the GPUs' device nodes (nvidiaN) are, which jobs that do not hold a GPU cannot open (or DSPOOL_GPU_DEV_DIR; default /dev)")
	f.StringArrayVar(&labels, "label", nil, "node label K=V (repeatable)")
	f.IntVar(&cfg.PidsLimit, "pids-limit", 4096, "most processes one job attempt may have")
	f.BoolVar(&leave, "leave-on-stop", true, "when stopped on purpose, tell the server so that the node leaves the pool at once (false: it is lost after the server's grace)")
	return c
}

// agentWatchdogCmd is the node's watchdog: the agent runs it, and it kills
// the node's attempts when the agent dies or stays cut off from the
// control plane past the deadline the agent gave (agent.RunWatchdog).
func (a *App) agentWatchdogCmd() *cobra.Command {
	var dirs []string
	c := &cobra.Command{
		Use: "watchdog", Short: "Kill a node's attempts when its agent dies (run by agents)", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Ctrl-C in the agent's terminal is the agent's to handle; the
			// end of stdin is the watchdog's signal.
			signal.Ignore(syscall.SIGINT, syscall.SIGHUP)
			agent.RunWatchdog(context.Background(), os.Stdin, dirs, logger(os.Stderr).With("process", "watchdog"))
			return nil
		},
	}
	c.Flags().StringArrayVar(&dirs, "cgroup", nil, "a directory of the node's cgroups (one per hierarchy)")
	return c
}
