package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/provider/slurm/slurmtest"
)

var slurmCommands = []string{"sbatch", "squeue", "scancel", "scontrol"}

// slurmEngine starts a private Slurm cluster (2 nodes x 2 cpus) and puts
// a wrapper for each Slurm command first on the PATH: it logs
// "UNIXTIME COMMAND", then runs the real one.
func slurmEngine() (*engine, string, error) {
	if _, err := os.Stat("/usr/bin/sbatch"); err != nil {
		return nil, "Slurm is not installed (apt-get install slurm-wlm munge)", nil
	}
	cluster, why, err := slurmtest.Start(2, 2)
	if cluster == nil {
		return nil, why, err
	}
	dir, err := os.MkdirTemp("", "dspool-bench-slurm-calls-")
	if err != nil {
		cluster.Stop()
		return nil, "", err
	}
	log := filepath.Join(dir, "slurm-calls.log")
	for _, c := range slurmCommands {
		body := fmt.Sprintf("#!/bin/sh\nprintf '%%s %s\\n' \"$(date +%%s.%%N)\" >> %s\nexec %s \"$@\"\n", c, log, filepath.Join("/usr/bin", c))
		if err := os.WriteFile(filepath.Join(dir, c), []byte(body), 0o755); err != nil {
			cluster.Stop()
			return nil, "", err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		cluster.Stop()
		return nil, "", err
	}
	path := os.Getenv("PATH")
	os.Setenv("PATH", dir+":"+path)
	os.Setenv("SLURM_CONF", cluster.Conf)
	return &engine{
		name:  "Slurm (Debian slurm-wlm, 2 nodes x 2 cpus on this machine)",
		kinds: slurmCommands, grow: "sbatch", remove: "scancel",
		settings: func(bin, share, tmp string) (dspool.ProviderSpec, error) {
			return dspool.ProviderSpec{Name: "slurm", Settings: map[string]json.RawMessage{"partition": q(cluster.Partition), "dspool": q(bin),
				"share": q(share), "state": q(filepath.Join(tmp, "agents")), "logs": q(tmp), "time": q("1h")}}, nil
		},
		calls: func() []call { return slurmCalls(log) },
		start: func(context.Context, string, string) {},
		stop: func() {
			cluster.Stop()
			os.Setenv("PATH", path)
			os.Unsetenv("SLURM_CONF")
			os.RemoveAll(dir)
		},
	}, "", nil
}

func slurmCalls(log string) []call {
	f, err := os.Open(log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ts, cmd, ok := strings.Cut(sc.Text(), " ")
		sec, err := strconv.ParseFloat(ts, 64)
		if ok && err == nil {
			out = append(out, call{time.Unix(0, int64(sec*1e9)), cmd})
		}
	}
	return out
}
