package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/provider/slurm/slurmtest"
)

// TestSlurmPool runs a pool whose nodes are Slurm allocations, on a private
// Slurm cluster on this machine: a job submitted to the empty pool runs on
// an agent that an sbatch job started, the idle node goes with scancel, and
// a node Slurm holds back shows Slurm's pending reason in the job's wait.
func TestSlurmPool(t *testing.T) {
	requireRoot(t)
	cluster, why, err := slurmtest.Start(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if cluster == nil {
		slurmtest.Skip(t, why)
	}
	t.Cleanup(cluster.Stop)
	up := startUp(t, upConfig{UIDBase: uidBase(186), Env: cluster.Env()})
	state := tempDir(t)
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: hpc
  provider: {name: slurm, partition: `+cluster.Partition+`, time: 1h, dspool: `+bin+`, share: `+up.Share+`, state: `+state+`, logs: `+state+`}
  node: {cpus: 1, memory: 512MiB}
  work: [batch]
  autoscale: {min: 0, max: 2, idle_timeout: 3s}
- name: later
  provider: {name: slurm, partition: `+cluster.Partition+`, dspool: `+bin+`, share: `+up.Share+`, state: `+state+`, logs: `+state+`, options: [--begin=now+1hour]}
  node: {cpus: 1, memory: 512MiB}
  work: [batch]
  autoscale: {min: 0, max: 1, idle_timeout: 3s}
- name: broken
  provider: {name: slurm, partition: `+cluster.Partition+`, dspool: /nonexistent/dspool, share: `+up.Share+`, state: `+state+`, logs: `+state+`}
  node: {cpus: 1, memory: 512MiB}
  work: [batch]
  autoscale: {min: 0, max: 1, idle_timeout: 3s}
`))

	t.Run("a job wakes the empty pool through sbatch and runs", func(t *testing.T) {
		id := submit(t, up.env(), "--pool", "hpc", "--", "true")
		j := waitState(t, up.env(), id, dspool.JobSucceeded, 60*time.Second)
		t.Logf("job submitted to an empty Slurm pool -> running in %s", j.StartedAt.Sub(j.SubmittedAt).Round(time.Millisecond))
		var name string
		for _, n := range up.poolNodes(t, "hpc") {
			if n.ID == j.Node {
				name = n.Name
			}
		}
		if !strings.HasPrefix(name, "hpc-") {
			t.Fatalf("the job ran on node %q (%s), want a node of pool hpc", name, j.Node)
		}
		if q := cluster.Squeue("--noheader", "--format=%j %T"); !strings.Contains(q, "dspool.hpc."+name+" RUNNING") {
			t.Fatalf("squeue does not show node %s's allocation running:\n%s", name, q)
		}
		if evs := up.events(t, "hpc"); !hasEvent(evs, dspool.EventScaleOut, "added 1 node") {
			t.Fatalf("no scale_out event: %+v", evs)
		}
	})

	t.Run("the agent's join token is on no command line", func(t *testing.T) {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		found := false
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil || !strings.Contains(string(b), "--name\x00hpc-") {
				continue
			}
			found = true
			if strings.Contains(string(b), "dspj_") {
				t.Fatalf("an agent in an allocation has a join token on its command line: %q", b)
			}
		}
		if !found {
			t.Fatalf("no agent of pool hpc is running")
		}
	})

	t.Run("the idle node goes with scancel", func(t *testing.T) {
		eventually(t, 60*time.Second, "pool hpc back to zero nodes", func() bool { return len(up.poolNodes(t, "hpc")) == 0 })
		eventually(t, 30*time.Second, "its allocation to end", func() bool {
			return !strings.Contains(cluster.Squeue("--noheader", "--format=%j %T"), "dspool.hpc.")
		})
		if evs := up.events(t, "hpc"); !hasEvent(evs, dspool.EventRemove, "removed node hpc-") {
			t.Fatalf("no node_removed event: %+v", evs)
		}
	})

	t.Run("Slurm's pending reason is the waiting job's", func(t *testing.T) {
		id := submit(t, up.env(), "--pool", "later", "--", "true")
		eventually(t, 30*time.Second, "the job to wait with Slurm's reason", func() bool {
			j := job(t, up.env(), id)
			return strings.Contains(j.Waiting, "slurm") && strings.Contains(j.Waiting, "BeginTime")
		})
		t.Logf("waiting: %s", job(t, up.env(), id).Waiting)
		if evs := up.events(t, "later"); !hasEvent(evs, dspool.EventWaiting, "BeginTime") {
			t.Fatalf("no waiting event with Slurm's reason: %+v", evs)
		}
		cliOK(t, up.env(), "job", "cancel", itoa(id))
	})

	t.Run("an allocation that cannot start its agent is a classed failure that backs off", func(t *testing.T) {
		id := submit(t, up.env(), "--pool", "broken", "--", "true")
		eventually(t, 60*time.Second, "a provider_error saying the binary is missing", func() bool {
			return hasEvent(up.events(t, "broken"), dspool.EventProviderError, "slurm (image)", "exited 127", "/nonexistent/dspool")
		})
		eventually(t, 10*time.Second, "the job to wait with the reason", func() bool {
			return strings.Contains(job(t, up.env(), id).Waiting, "slurm (image)")
		})
		t.Logf("waiting: %s", job(t, up.env(), id).Waiting)
		// A minute's backoff: one sbatch, not one a pass.
		n := 0
		for _, e := range up.events(t, "broken") {
			if e.Kind == dspool.EventScaleOut {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d nodes asked for within the backoff, want 1", n)
		}
		cliOK(t, up.env(), "job", "cancel", itoa(id))
	})
}
