package e2e_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// fourGPUs makes a stand-in nvidia-smi that tells every node it has four
// A100s (UUIDs of the node's own), for PATH, and their device nodes (the
// machine's /dev/zero under other names), for DSPOOL_GPU_DEV_DIR.
func fourGPUs(t *testing.T) (bin, dev string) {
	t.Helper()
	bin, dev = gpuDirs(t, 5, 5, 5, 5) // /dev/zero
	smi := `#!/bin/sh
# Four A100s on every node, with UUIDs of the node's own (its agent's --name).
name=$(tr '\0' '\n' < /proc/$PPID/cmdline | sed -n '/^--name$/{n;p;}')
u=$(printf %s "$name" | cksum | cut -c1-8)
case "$1" in
-L|--query-gpu=index,utilization.gpu) exit 0 ;;
esac
for i in 0 1 2 3; do
  echo "$i, NVIDIA A100-SXM4-40GB, GPU-$u-0000-0000-0000-00000000000$i, 40960, 00000000:0$i:00.0, Disabled"
done
`
	if err := os.WriteFile(filepath.Join(bin, "nvidia-smi"), []byte(smi), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dev
}

// TestGPUReservation: on two nodes of four GPUs, with 1-GPU jobs on both,
// a 4-GPU job that has waited reserves the node whose work ends first by
// its time limits and starts there within its reservation, while 1-GPU jobs
// that end before it backfill around it and those that would not are kept
// off the reserved node.
func TestGPUReservation(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/sys/fs/cgroup/devices/devices.deny"); err != nil {
		t.Skip("no cgroup v1 devices controller here")
	}
	bin, dev := fourGPUs(t)
	names := []string{"e2eann290", "e2ebob290"}
	for _, name := range names {
		removeAccountAfter(t, name)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(290), Args: []string{"--reserve-after", "2s"},
		Env: []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "DSPOOL_GPU_DEV_DIR=" + dev}})
	_, annTok := up.createUser(t, names[0])
	_, bobTok := up.createUser(t, names[1])
	ann, bob := up.userEnv(annTok), up.userEnv(bobTok)
	applyPool(t, up, "name: gpu\nnode: {cpus: 8, memory: 4GiB, gpus: 4}\ncount: 2\nwork: [batch]\n")
	up.waitNodes(t, "gpu", 2)

	one := func(limit, secs string) int64 {
		return submit(t, bob, "--pool", "gpu", "--gpus", "1", "--cpus", "1", "--memory", "64MiB", "--time", limit, "--", "sleep", secs)
	}
	// Best fit fills one node's four GPUs with the 1-hour jobs, and the
	// fifth, of 20 s, goes to the other: no node has four free. The fifth
	// also ends well before the others, so the node it frees is the first
	// with room for the 4-GPU job.
	var first []int64
	for range 4 {
		first = append(first, one("1h", "14"))
	}
	fifth := one("20s", "4")
	for _, id := range append(first, fifth) {
		waitState(t, bob, id, dspool.JobRunning, 30*time.Second)
	}
	fifthNode := job(t, bob, fifth).Node

	large := submit(t, ann, "--pool", "gpu", "--gpus", "4", "--cpus", "1", "--memory", "64MiB", "--time", "1m", "--", "true")
	var entry dspool.QueueEntry
	eventually(t, 20*time.Second, "the 4-GPU job to reserve a node", func() bool {
		var q dspool.Queue
		cliJSON(t, ann, &q, "queue", "--pool", "gpu")
		for _, e := range q.Jobs {
			if e.ID == large {
				entry = e
			}
		}
		return entry.Reason == dspool.WaitReservation
	})
	if entry.ReservedNode != fifthNode || entry.EstimatedStart == nil {
		t.Fatalf("the 4-GPU job's queue entry: %+v; want it reserving node %s, whose work ends first by its time limit, with a start", entry, fifthNode)
	}
	t.Logf("job %d reserved %s from %s: %s", large, entry.ReservedNode, entry.EstimatedStart.Format(time.RFC3339), entry.Detail)

	// Short 1-GPU jobs may use the reserved node's free GPUs; long ones
	// may not.
	var shorts, longs []int64
	for range 3 {
		shorts = append(shorts, one("2s", "0.5"))
	}
	for range 3 {
		longs = append(longs, one("1h", "1"))
	}

	big := waitState(t, ann, large, dspool.JobSucceeded, 90*time.Second)
	if big.Node != entry.ReservedNode {
		t.Errorf("the 4-GPU job ran on %s, want the node it reserved, %s", big.Node, entry.ReservedNode)
	}
	if big.StartedAt.After(entry.EstimatedStart.Add(2 * time.Second)) {
		t.Errorf("the 4-GPU job started at %s, after its reservation's start %s", big.StartedAt.Format(time.RFC3339Nano), entry.EstimatedStart.Format(time.RFC3339))
	}
	backfilled := 0
	for _, id := range shorts {
		if j := waitState(t, bob, id, dspool.JobSucceeded, 90*time.Second); j.Node == entry.ReservedNode && j.StartedAt.Before(*big.StartedAt) {
			backfilled++
		}
	}
	if backfilled == 0 {
		t.Errorf("no short 1-GPU job ran on the reserved node before the 4-GPU job: nothing was backfilled")
	}
	for _, id := range longs {
		if j := waitState(t, bob, id, dspool.JobSucceeded, 90*time.Second); j.Node == entry.ReservedNode && j.StartedAt.Before(*big.StartedAt) {
			t.Errorf("long job %d (--time 1h) started on the reserved node before the 4-GPU job", id)
		}
	}
	t.Logf("the 4-GPU job waited %s; %d short 1-GPU jobs backfilled the reserved node", big.StartedAt.Sub(big.SubmittedAt).Round(time.Millisecond), backfilled)
}
