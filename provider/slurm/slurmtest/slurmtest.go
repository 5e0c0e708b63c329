// Package slurmtest starts a private Slurm cluster (Debian's slurm-wlm and
// munge, on 127.0.0.1 only) for tests, with bench/peers/slurm.sh, and
// stops it by its PID files. A test that needs one skips, saying why,
// where it cannot run (not root, Slurm not installed), unless
// DSPOOL_REQUIRE_SLURM=1 (CI), where that is a failure.
package slurmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Cluster is a running private Slurm cluster.
type Cluster struct {
	Dir  string
	Conf string // its slurm.conf: SLURM_CONF for the commands
	// Partition is its one partition.
	Partition string
}

// Env is what Slurm's commands need to reach it.
func (c *Cluster) Env() []string { return []string{"SLURM_CONF=" + c.Conf} }

// Start starts a cluster of nodes × cpus, for as long as m runs; call Stop
// when the tests are done. It returns nil and why where it cannot run.
func Start(nodes, cpus int) (*Cluster, string, error) {
	if os.Geteuid() != 0 {
		return nil, "the Slurm tests need root (munged and slurmd run as root here)", nil
	}
	for _, b := range []string{"/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/sbin/munged"} {
		if _, err := os.Stat(b); err != nil {
			return nil, "Slurm is not installed (apt-get install slurm-wlm munge): " + b + " is missing", nil
		}
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "bench", "peers", "slurm.sh")
	dir, err := os.MkdirTemp("", "dspool-slurm-")
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // munged runs as munge
		return nil, "", err
	}
	port, err := freePorts(nodes + 1)
	if err != nil {
		return nil, "", err
	}
	c := &Cluster{Dir: dir, Conf: filepath.Join(dir, "slurm", "etc", "slurm.conf"), Partition: "bench"}
	cmd := exec.Command("bash", script, "up")
	cmd.Env = append(os.Environ(), "SLURM_BENCH_DIR="+dir, fmt.Sprintf("SLURM_BENCH_PORT=%d", port),
		fmt.Sprintf("SLURM_BENCH_NODES=%d", nodes), fmt.Sprintf("SLURM_BENCH_CPUS=%d", cpus), "SLURM_BENCH_NO_INSTALL=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		c.Stop()
		return nil, "", fmt.Errorf("start Slurm: %v\n%s", err, out)
	}
	return c, "", nil
}

// Stop cancels the cluster's jobs and stops its daemons.
func (c *Cluster) Stop() {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "bench", "peers", "slurm.sh")
	cmd := exec.Command("bash", script, "down")
	cmd.Env = append(os.Environ(), "SLURM_BENCH_DIR="+c.Dir)
	_ = cmd.Run()
	_ = os.RemoveAll(c.Dir)
}

// Skip skips t with why, or fails it where Slurm is required.
func Skip(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("DSPOOL_REQUIRE_SLURM") == "1" {
		t.Fatalf("DSPOOL_REQUIRE_SLURM=1, but %s", why)
	}
	t.Skip(why)
}

// freePorts finds n consecutive free ports on 127.0.0.1 and returns the
// first.
func freePorts(n int) (int, error) {
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if base+n > 65000 {
			continue
		}
		ok := true
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports", n)
}

// Squeue runs squeue on the cluster with args.
func (c *Cluster) Squeue(args ...string) string {
	cmd := exec.Command("squeue", args...)
	cmd.Env = append(os.Environ(), c.Env()...)
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out))
}
