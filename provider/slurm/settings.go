package slurm

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// Settings are a Slurm pool's provider block:
//
//	provider: {name: slurm, partition: debug, time: 1d, account: lab}
type Settings struct {
	// Partition, Account, QOS and Constraint are sbatch's --partition,
	// --account, --qos and --constraint ("": Slurm's defaults).
	Partition  string `json:"partition,omitempty"`
	Account    string `json:"account,omitempty"`
	QOS        string `json:"qos,omitempty"`
	Constraint string `json:"constraint,omitempty"`
	// Time is the allocation's time limit (90m, 12h, 1d; "": the
	// partition's). The node leaves the pool when it ends, its running
	// attempts retried elsewhere as from any node that is lost.
	Time string `json:"time,omitempty"`
	// Options are more sbatch options, each one word (--exclusive,
	// --reservation=maint).
	Options []string `json:"options,omitempty"`
	// Dspool is the dspool binary on the Slurm nodes (default: the
	// control plane's own path); Share where they mount the share
	// (default: where the control plane does); State the directory under
	// which each node's agent keeps its state (default /tmp/dspool-slurm).
	Dspool string `json:"dspool,omitempty"`
	Share  string `json:"share,omitempty"`
	State  string `json:"state,omitempty"`
	// Logs is a directory on the nodes, there before the job starts,
	// where each node's job writes its output: dspool-NODE-JOBID.log
	// (default /tmp).
	Logs string `json:"logs,omitempty"`
}

// DefaultState is where agents keep their state on Slurm nodes.
const DefaultState = "/tmp/dspool-slurm"

// options the provider sets itself: a pool may not give them again.
var ownOptions = []string{"--job-name", "-J", "--parsable", "--export", "--cpus-per-task", "-c", "--mem", "--gres", "--gpus",
	"--wrap", "--output", "-o", "--error", "-e", "--chdir", "-D", "--ntasks", "-n", "--nodes", "-N", "--array", "-a",
	"--partition", "-p", "--account", "-A", "--qos", "-q", "--time", "-t", "--constraint", "-C", "--comment"}

// Check validates the settings of pool p and fills their defaults.
func (s *Settings) Check(prefix string, p *dspool.Pool) error {
	f := func(name string) string { return prefix + "provider." + name }
	for _, v := range []struct{ name, value string }{{"partition", s.Partition}, {"account", s.Account}, {"qos", s.QOS}, {"constraint", s.Constraint}} {
		if strings.ContainsAny(v.value, " \t\n\r\x00") || len(v.value) > 256 {
			return dspool.Invalid(f(v.name), "%q is not a Slurm %s: one word, at most 256 characters", v.value, v.name)
		}
	}
	if s.Time != "" {
		if _, err := minutes(s.Time); err != nil {
			return dspool.Invalid(f("time"), "%v", err)
		}
	}
	if len(s.Options) > 32 {
		return dspool.Invalid(f("options"), "has %d options: at most 32", len(s.Options))
	}
	for i, o := range s.Options {
		field := fmt.Sprintf("%s[%d]", f("options"), i)
		if !strings.HasPrefix(o, "-") || strings.ContainsAny(o, " \t\n\r\x00") || len(o) > 256 {
			return dspool.Invalid(field, "%q is not one sbatch option: give it as one word, --name=value", o)
		}
		name, _, _ := strings.Cut(o, "=")
		for _, own := range ownOptions {
			if name == own || (len(own) == 2 && strings.HasPrefix(o, own) && len(o) > 2 && o[1] != '-') {
				return dspool.Invalid(field, "%s is set by dspool (from the pool's node size, or as a setting of its own): remove it", name)
			}
		}
	}
	for _, v := range []struct{ name, value string }{{"dspool", s.Dspool}, {"share", s.Share}, {"state", s.State}, {"logs", s.Logs}} {
		if v.value != "" && (!strings.HasPrefix(v.value, "/") || strings.ContainsAny(v.value, "\n\r\x00")) {
			return dspool.Invalid(f(v.name), "%q must be an absolute path", v.value)
		}
	}
	if p.Node.CPUs%1000 != 0 {
		return dspool.Invalid(prefix+"node.cpus", "Slurm allocates whole cpus: give pool %s a whole number of cpus", p.Name)
	}
	if s.State == "" {
		s.State = DefaultState
	}
	if s.Logs == "" {
		s.Logs = "/tmp"
	}
	return nil
}

// minutes reads a time limit as Slurm's --time takes it: whole minutes,
// at least one.
func minutes(s string) (int, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 365 {
			return 0, fmt.Errorf("%q is not a time limit: give minutes, hours or days (90m, 12h, 1d)", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < time.Minute || d > 365*24*time.Hour {
			return 0, fmt.Errorf("%q is not a time limit: give minutes, hours or days (90m, 12h, 1d), at least 1m", s)
		}
	}
	return int((d + time.Minute - 1) / time.Minute), nil
}

// Kind is the Slurm provider as the wiring registers it; opts are the
// defaults of its pools (the control plane's binary and share).
func Kind(opts Options) autoscale.Kind {
	return autoscale.Kind{
		Name:     "slurm",
		Settings: func() autoscale.Settings { return &Settings{} },
		New: func(env autoscale.Env) (autoscale.Provider, error) {
			o := opts
			if o.Exe == "" {
				o.Exe = env.Exe
			}
			if o.Share == "" {
				o.Share = env.Share
			}
			if o.Logger == nil {
				o.Logger = env.Logger
			}
			return New(o), nil
		},
		// squeue is one RPC to slurmctld; Slurm's guidance is to not poll
		// it in a tight loop. Every 30 s while nothing changes, every 5 s
		// while a node waits in the queue or was just asked for.
		List: autoscale.ListPolicy{Every: 30 * time.Second, Changing: 5 * time.Second, MinGap: 2 * time.Second},
	}
}
