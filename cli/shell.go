package cli

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

// shellCmd is an interactive allocation, as Slurm's salloc and srun --pty
// give: an SSH login to USER+POOL+SIZE through the pool's gateway, with
// the system's OpenSSH client.
func (a *App) shellCmd() *cobra.Command {
	var pool, profile, cpus, memory, sshAddr string
	var gpus int
	var limit time.Duration
	c := &cobra.Command{
		Use:   "shell [--pool POOL] [--profile NAME | --cpus N --memory SIZE --gpus N --time D] [-- COMMAND...]",
		Short: "Open a shell (or run a command) in a session of the size you ask for",
		Long: `A session of the size the work needs: the session holds those cpus, memory
and GPUs on its node until you log out (or --time runs out), and its
processes can use no more, as a job's cannot. It is an SSH login through the
pool's gateway to USER+POOL+SIZE (ssh ann+gpu+8cpu-64gib-1gpu-4h@pool), made
with your OpenSSH client and the key you added with dspool key add;
DSPOOL_SSH_COMMAND replaces "ssh" (e.g. "ssh -i ~/.ssh/other_key"), and
--ssh (or DSPOOL_SSH) names the gateway (default: the server's host, port
2222). A profile is a size the pool defines (sessions.profiles); sizes
given with --cpus, --memory, --gpus and --time leave the rest at the
pool's session size.`,
		Example: "  dspool shell --cpus 8 --memory 64GiB --gpus 1 --time 4h\n  dspool shell --pool gpu --profile large\n  dspool shell --cpus 2 -- nproc",
		RunE: func(cmd *cobra.Command, args []string) error {
			z, err := shellSize(cpus, memory, gpus, limit)
			if err != nil {
				return err
			}
			size := z.Key()
			if profile != "" {
				if size != "" {
					return dspool.Invalid("--profile", "give a profile or a size (--cpus, --memory, --gpus, --time), not both")
				}
				size = profile
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			me, err := cl.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			if size != "" && pool == "" {
				pool = dspool.DefaultPool
			}
			login := dspool.Login{User: me.Name, Pool: pool, Size: size}
			if _, err := dspool.ParseLogin(login.String()); err != nil {
				return err
			}
			host, port, err := a.gatewayAddr(cl.Server, sshAddr)
			if err != nil {
				return err
			}
			sshArgs := strings.Fields(a.Getenv("DSPOOL_SSH_COMMAND"))
			if len(sshArgs) == 0 {
				sshArgs = []string{"ssh"}
			}
			sshArgs = append(sshArgs, "-p", port)
			if len(args) == 0 {
				sshArgs = append(sshArgs, "-t")
			}
			sshArgs = append(append(sshArgs, "--", login.String()+"@"+host), args...)
			ssh := exec.CommandContext(cmd.Context(), sshArgs[0], sshArgs[1:]...)
			ssh.Stdin, ssh.Stdout, ssh.Stderr = a.Stdin, a.Stdout, a.Stderr
			err = ssh.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &ExitError{Code: ee.ExitCode()}
			}
			if err != nil {
				return fmt.Errorf("run %s: %w (install the OpenSSH client, or set DSPOOL_SSH_COMMAND)", sshArgs[0], err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&pool, "pool", "", "interactive pool (default: the default interactive pool; \"default\" with a size)")
	f.StringVar(&profile, "profile", "", "a session profile of the pool (dspool pool show POOL lists them)")
	f.StringVar(&cpus, "cpus", "", "whole cpus to hold, e.g. 8 (default: the pool's session size)")
	f.StringVar(&memory, "memory", "", "memory to hold, in MiB or GiB, e.g. 64GiB (default: the pool's session size)")
	f.IntVar(&gpus, "gpus", 0, "GPUs to hold; the session's processes can open no other")
	f.DurationVar(&limit, "time", 0, "the longest the session may last, in minutes or hours, e.g. 4h (default: until you log out)")
	f.StringVar(&sshAddr, "ssh", "", "the pool's SSH gateway HOST:PORT (or DSPOOL_SSH; default: the server's host, port 2222)")
	return c
}

// shellSize is the size dspool shell's flags ask for, in the form a login
// carries it (whole cpus, MiB, minutes).
func shellSize(cpus, memory string, gpus int, limit time.Duration) (dspool.SessionSize, error) {
	var z dspool.SessionSize
	if cpus != "" {
		c, err := dspool.ParseCPU(cpus)
		if err != nil || c <= 0 || c%1000 != 0 {
			return z, dspool.Invalid("--cpus", "%q is not a whole number of cpus above 0: a session holds whole cpus", cpus)
		}
		z.CPUs = c
	}
	if memory != "" {
		m, err := dspool.ParseBytes(memory)
		if err != nil || m < dspool.MinMemory || m%(1<<20) != 0 {
			return z, dspool.Invalid("--memory", "%q is not a size of at least 1MiB in MiB or GiB, e.g. 64GiB", memory)
		}
		z.Memory = m
	}
	if gpus < 0 || gpus > dspool.MaxGPUs {
		return z, dspool.Invalid("--gpus", "%d is out of range: give 0 to %d", gpus, dspool.MaxGPUs)
	}
	z.GPUs = gpus
	if limit < 0 || limit > 0 && (limit < time.Minute || limit%time.Minute != 0) {
		return z, dspool.Invalid("--time", "%s is not a whole number of minutes, at least 1m: e.g. 30m or 4h", limit)
	}
	z.Time = dspool.Duration(limit)
	return z, nil
}

// gatewayAddr is where the pool's SSH gateway listens: flag, DSPOOL_SSH,
// else the server's host at port 2222.
func (a *App) gatewayAddr(server, flag string) (host, port string, err error) {
	addr := firstOf(flag, a.Getenv("DSPOOL_SSH"))
	if addr == "" {
		u, err := url.Parse(server)
		if err != nil || u.Hostname() == "" {
			return "", "", dspool.Invalid("--ssh", "cannot tell the gateway's host from the server %q: give --ssh HOST:PORT", server)
		}
		return u.Hostname(), "2222", nil
	}
	host, port, err = net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || strings.HasPrefix(host, "-") {
		return "", "", dspool.Invalid("--ssh", "%q is not HOST:PORT", addr)
	}
	return host, port, nil
}
