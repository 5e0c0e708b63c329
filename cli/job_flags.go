package cli

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// jobFlags are the flags that describe a job: `job submit` has them, and
// `schedule create` takes the same, read into a spec by the same code.
type jobFlags struct {
	spec                                 dspool.JobSpec
	cpus, memory, envFile, sweep         string
	gpuMemory                            string
	env, secretEnv, secretFiles, exports []string
	exportAll, login                     bool
	// names are the flags' names: those a batch script's #DSPOOL lines
	// may set.
	names map[string]bool
}

// add adds the flags to c; usage is how c is given a command, for the
// hint to a user who gave a flag of their command without -- before it.
func (o *jobFlags) add(c *cobra.Command, usage string) {
	f := c.Flags()
	before := map[string]bool{}
	f.VisitAll(func(fl *pflag.Flag) { before[fl.Name] = true })
	f.StringVar(&o.spec.Pool, "pool", "", "pool to run in (default \"default\")")
	f.StringVar(&o.spec.Team, "team", "", "team the job runs for, whose limits apply (default: your one team that may use the pool)")
	f.StringVar(&o.spec.Name, "name", "", "job name (default: the command's base name)")
	f.StringVar(&o.cpus, "cpus", "", "cpus to hold, e.g. 1, 0.5, 8 (default 1)")
	f.StringVar(&o.memory, "memory", "", "memory limit, e.g. 512MiB, 16GiB (default 512MiB)")
	f.IntVar(&o.spec.GPUs, "gpus", 0, "GPUs to hold; the job sees them as CUDA_VISIBLE_DEVICES and can open no other")
	f.StringVar(&o.spec.GPUType, "gpu-type", "", "GPU model, a word of its name as nvidia-smi shows it: a100, h100, t4, or a MIG profile such as 1g.10gb (default: any)")
	f.StringVar(&o.gpuMemory, "gpu-memory", "", "least memory of each GPU, e.g. 40GiB (default: any)")
	f.Var((*durationFlag)(&o.spec.TimeLimit), "time", "time limit, e.g. 30m, 2h (default none)")
	f.IntVar(&o.spec.Retries, "retries", 0, "how many times to retry a failed attempt")
	f.Var(priorityFlag{&o.spec.Priority}, "priority", "higher runs first, within your and your team's range (none set: 0 or below); default: your default priority, else your team's, else 0")
	f.StringArrayVar(&o.env, "env", nil, "environment variable K=V (repeatable)")
	f.StringArrayVar(&o.secretEnv, "secret", nil, "secret NAME (or TEAM/NAME) in the variable ENVVAR: NAME[=ENVVAR]; default NAME upper-cased, '-' as '_' (repeatable)")
	f.StringArrayVar(&o.secretFiles, "secret-file", nil, "secret NAME (or TEAM/NAME) as the file $DSPOOL_SECRETS_DIR/NAME, readable by the job alone (repeatable)")
	f.StringVar(&o.spec.Image, "image", "", "run in this image with podman: a NAME on the nodes, or a FILE.tar[.gz] from podman save, relative to your home on the share (default: the pool's, if any)")
	f.StringVar(&o.spec.Workdir, "workdir", "", "working directory, relative to your home on the share (default: the directory you submit from when it is in your home on the share, else jobs/ID)")
	f.StringVar(&o.spec.Array, "array", "", "an array of tasks, each a job with its index in DSPOOL_ARRAY_INDEX: 0-99, 1,3,5-9, 0-999:10; %N runs at most N at once (0-999%50)")
	f.StringVar(&o.sweep, "sweep", "", "a task per row of a CSV file (its header names the variables) or of JSON lines, the row's values as variables; with --array %N at most N at once")
	f.StringVar(&o.spec.After, "after", "", "run after other jobs end: ok:ID (succeeded), notok:ID (failed or cancelled), any:ID; ID may be an array (all its tasks) or a task (40_7); comma-separated")
	f.BoolVar(&o.spec.Hold, "hold", false, "queue the job held: it runs once released (dspool job release ID)")
	f.BoolVar(&o.spec.Preemptible, "preemptible", false, "a job of a higher score may evict it (SIGTERM, then SIGKILL after the pool's grace, in seconds in DSPOOL_PREEMPT_GRACE) and it waits in the queue again; the pool must allow it")
	f.StringSliceVar(&o.exports, "export", nil, "variables of your environment the job gets too: VAR[,VAR...] (repeatable)")
	f.BoolVar(&o.exportAll, "export-all", false, "the job gets your environment (but for what the node sets: HOME, USER, TERM, DSPOOL_*, ...)")
	f.StringVar(&o.envFile, "env-file", "", "variables from a file of KEY=VALUE lines (# comments; quotes and export are allowed)")
	f.BoolVar(&o.login, "login", false, "run the command in your login shell (bash -l), so that your profile applies")
	o.names = map[string]bool{}
	f.VisitAll(func(fl *pflag.Flag) {
		if !before[fl.Name] {
			o.names[fl.Name] = true
		}
	})
	// A flag of the command itself, given without -- before the command
	// (`dspool job submit python3 train.py --epochs 10`), is no flag of
	// ours: say where it belongs.
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown shorthand flag") {
			return fmt.Errorf("%w: if it is your command's, put -- before the command: %s", err, usage)
		}
		return err
	})
}

// build reads the job's command and the flags into a spec, normalized:
// args is the command, after -- (dashed), or else a batch script and its
// arguments, whose #DSPOOL lines set flags too.
func (o *jobFlags) build(a *App, cmd *cobra.Command, args []string, dashed bool) (*dspool.JobSpec, error) {
	spec := &o.spec
	spec.Command = args
	var err error
	if !dashed && len(args) > 0 {
		script, directives, ok, err := batchScript(args[0], args[1:])
		if err != nil {
			return nil, err
		}
		if ok {
			spec.Command = script
			if err := o.applyDirectives(cmd.Flags(), args[0], directives); err != nil {
				return nil, err
			}
			if spec.Name == "" {
				spec.Name = filepath.Base(args[0])
			}
		}
	}
	if err := a.jobEnvironment(spec, o.exports, o.exportAll, o.envFile); err != nil {
		return nil, err
	}
	if o.sweep != "" {
		if spec.Sweep, err = readSweep(o.sweep); err != nil {
			return nil, err
		}
	}
	if o.login {
		spec.Command = []string{"/bin/bash", "-l", "-c", shellQuote(spec.Command)}
	}
	if o.cpus != "" {
		if spec.CPUs, err = dspool.ParseCPU(o.cpus); err != nil {
			return nil, dspool.Invalid("--cpus", "%v", err)
		}
		if spec.CPUs == 0 {
			return nil, dspool.Invalid("--cpus", "must be more than 0")
		}
	}
	if o.memory != "" {
		if spec.Memory, err = dspool.ParseBytes(o.memory); err != nil {
			return nil, dspool.Invalid("--memory", "%v", err)
		}
		if spec.Memory == 0 {
			return nil, dspool.Invalid("--memory", "must be more than 0")
		}
	}
	if o.gpuMemory != "" {
		if spec.GPUMemory, err = dspool.ParseBytes(o.gpuMemory); err != nil {
			return nil, dspool.Invalid("--gpu-memory", "%v", err)
		}
	}
	for _, kv := range o.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, dspool.Invalid("--env", "%q is not K=V", kv)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	for _, x := range o.secretEnv {
		ref, env, _ := strings.Cut(x, "=")
		spec.Secrets = append(spec.Secrets, dspool.SecretUse{Secret: ref, Env: env})
	}
	for _, ref := range o.secretFiles {
		spec.Secrets = append(spec.Secrets, dspool.SecretUse{Secret: ref, File: true})
	}
	if err := spec.Normalize(); err != nil {
		return nil, o.flagsOf(err)
	}
	return spec, nil
}

// flagsOf names the --secret or --secret-file flag that an error about one
// of the job's secrets is about.
func (o *jobFlags) flagsOf(err error) error {
	return secretFlags(err, o.secretEnv, o.secretFiles)
}

// applyDirectives sets the flags a batch script's #DSPOOL lines give,
// except those the command line set. Only the job's flags may be set.
func (o *jobFlags) applyDirectives(fs *pflag.FlagSet, script string, words []string) error {
	return applyDirectives(fs, script, words, o.names)
}

// priorityFlag sets a spec's priority only when the flag is given, so that
// a job without it gets the default of its user's or team's limits.
type priorityFlag struct{ p **int }

func (f priorityFlag) String() string {
	if *f.p == nil {
		return ""
	}
	return strconv.Itoa(**f.p)
}

func (f priorityFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*f.p = &n
	return nil
}

func (priorityFlag) Type() string { return "int" }
