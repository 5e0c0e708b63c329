package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
)

// fakeGPUs makes what agents are told of GPUs by in these tests: a
// directory with a stand-in nvidia-smi that prints recorded output (the
// first node of a pool an A100 node, the others T4 nodes), for PATH, and a
// directory of device nodes nvidia0 and nvidia1, for DSPOOL_GPU_DEV_DIR.
// The device nodes are the machine's /dev/zero and /dev/full under other
// names: a job that may open a GPU reads from it, and one that may not is
// refused by the devices cgroup, as it would be on a GPU machine.
func fakeGPUs(t *testing.T) (bin, dev string) {
	t.Helper()
	bin, dev = gpuDirs(t, 5, 7) // /dev/zero, /dev/full
	for _, f := range []string{"nvidia-smi", "a100.query", "t4.query"} {
		b, err := os.ReadFile(filepath.Join("testdata", "nvidia-smi", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, dev
}

// gpuDirs makes a directory for a stand-in nvidia-smi (bin) and one of
// device nodes nvidia0, nvidia1... (dev), one for each of minors: the
// machine's memory devices (major 1) under GPUs' names.
func gpuDirs(t *testing.T, minors ...uint32) (bin, dev string) {
	t.Helper()
	dir := tempDir(t)
	bin, dev = filepath.Join(dir, "bin"), filepath.Join(dir, "dev")
	for _, d := range []string{bin, dev} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, minor := range minors {
		p := filepath.Join(dev, "nvidia"+itoa(int64(i)))
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, minor))); err != nil {
			t.Skipf("cannot make device nodes here: %v", err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	return bin, dev
}

// TestGPUs runs jobs on a pool of an A100 node and a T4 node (recorded
// nvidia-smi output, fake device nodes): a job lands only where its GPU
// model is, an unknown model is refused naming the field, and a job that
// unsets CUDA_VISIBLE_DEVICES still cannot open another job's GPU.
func TestGPUs(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/sys/fs/cgroup/devices/devices.deny"); err != nil {
		t.Skip("no cgroup v1 devices controller here")
	}
	bin, dev := fakeGPUs(t)
	// GPU 0 of every node is at work (nvidia-smi's utilization.gpu).
	if err := os.WriteFile(filepath.Join(bin, "util"), []byte("0, 87\n1, 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(240),
		Env: []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "DSPOOL_GPU_DEV_DIR=" + dev}})
	removeAccountAfter(t, "e2egpu240")
	_, tok := up.createUser(t, "e2egpu240")
	env := up.userEnv(tok)
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: mixed
  node: {cpus: 2, memory: 1GiB, gpus: 2}
  count: 2
- name: later
  node: {cpus: 2, memory: 1GiB, gpus: 2}
  count: 0
`))
	nodes := up.waitNodes(t, "mixed", 2)
	model := map[string]string{} // node id -> its GPUs' model
	for _, n := range nodes {
		if len(n.Inventory.GPUs) != 2 {
			t.Fatalf("node %s offers GPUs %+v, want the 2 of the recorded nvidia-smi output", n.Name, n.Inventory.GPUs)
		}
		g := n.Inventory.GPUs[1]
		model[n.ID] = g.Name
		if g.UUID == "" || g.BusID == "" || g.Memory < 15<<30 {
			t.Errorf("node %s GPU 1 is %+v: want its UUID, bus id and memory from nvidia-smi", n.Name, g)
		}
	}
	var a100, t4 string
	for id, m := range model {
		switch m {
		case "NVIDIA A100-SXM4-40GB":
			a100 = id
		case "Tesla T4":
			t4 = id
		}
	}
	if a100 == "" || t4 == "" {
		t.Fatalf("nodes have GPUs %v: want one A100 node and one T4 node", model)
	}

	t.Run("a job lands only on a node of its GPU model and memory", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			node string
		}{
			{[]string{"--gpus", "2", "--gpu-type", "a100", "--gpu-memory", "40GiB"}, a100},
			{[]string{"--gpus", "1", "--gpu-type", "T4"}, t4},
			{[]string{"--gpus", "1", "--gpu-memory", "20GiB"}, a100},
		} {
			for range 2 {
				id := submit(t, env, append(append([]string{"--pool", "mixed"}, c.args...), "--", "sh", "-c", `echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER"`)...)
				j := waitState(t, env, id, dspool.JobSucceeded, 30*time.Second)
				if j.Node != c.node {
					t.Errorf("job %d (%s) ran on %s (%s), want %s (%s)", id, strings.Join(c.args, " "), j.Node, model[j.Node], c.node, model[c.node])
				}
				want := "0,1 PCI_BUS_ID\n"
				if c.args[1] == "1" {
					want = "0 PCI_BUS_ID\n"
				}
				if got := cliOK(t, env, "job", "logs", itoa(id)); got != want {
					t.Errorf("job %d printed %q, want %q", id, got, want)
				}
			}
		}
	})

	t.Run("an unknown model or too much memory is refused naming the field", func(t *testing.T) {
		for _, c := range []struct {
			args        []string
			field, says string
		}{
			{[]string{"--gpus", "1", "--gpu-type", "h100"}, "gpu_type", "NVIDIA A100-SXM4-40GB (40GiB), Tesla T4 (15GiB)"},
			{[]string{"--gpus", "1", "--gpu-type", "t4", "--gpu-memory", "40GiB"}, "gpu_memory", "Tesla T4"},
			{[]string{"--gpu-type", "a100"}, "gpu_type", "--gpus N"},
			{[]string{"--gpus", "1", "--gpu-type", "a100;rm"}, "gpu_type", "not a GPU model"},
		} {
			out, errs, code := cli(t, env, append(append([]string{"job", "submit", "--pool", "mixed"}, c.args...), "--", "true")...)
			if code == 0 || !strings.Contains(errs, c.field) || !strings.Contains(errs, c.says) {
				t.Errorf("job submit %s: exit %d, stdout %q, stderr %q; want a refusal naming %s that says %q", strings.Join(c.args, " "), code, out, errs, c.field, c.says)
			}
		}
	})

	t.Run("in a pool with no node yet, a job of a model waits and says why", func(t *testing.T) {
		id := submit(t, env, "--pool", "later", "--gpus", "1", "--gpu-type", "a100", "--", "true")
		j := job(t, env, id)
		if want := "no ready node of pool later has 1 GPU of type a100 (no ready node)"; j.State != dspool.JobQueued || !strings.Contains(j.Waiting, want) {
			t.Errorf("job %d is %s, waiting %q; want queued, waiting with %q", id, j.State, j.Waiting, want)
		}
		cliOK(t, env, "job", "cancel", itoa(id))
	})

	t.Run("a job that unsets CUDA_VISIBLE_DEVICES cannot open another job's GPU", func(t *testing.T) {
		holder := submit(t, env, "--pool", "mixed", "--gpus", "1", "--gpu-type", "a100", "--", "sleep", "120")
		h := waitState(t, env, holder, dspool.JobRunning, 30*time.Second)
		if h.Node != a100 || len(h.GPUIndices) != 1 || h.GPUIndices[0] != 0 {
			t.Fatalf("job %d holds GPUs %v on %s, want GPU 0 of the A100 node %s", holder, h.GPUIndices, h.Node, a100)
		}
		probe := `unset CUDA_VISIBLE_DEVICES; for g in 0 1; do if head -c1 ` + dev + `/nvidia$g >/dev/null 2>&1; then echo "gpu$g:open"; else echo "gpu$g:denied"; fi; done`
		id := submit(t, env, "--pool", "mixed", "--gpus", "1", "--gpu-type", "a100", "--", "sh", "-c", probe)
		j := waitState(t, env, id, dspool.JobSucceeded, 30*time.Second)
		if j.Node != a100 || len(j.GPUIndices) != 1 || j.GPUIndices[0] != 1 {
			t.Fatalf("job %d held GPUs %v on %s, want GPU 1 of %s", id, j.GPUIndices, j.Node, a100)
		}
		if got, want := cliOK(t, env, "job", "logs", itoa(id)), "gpu0:denied\ngpu1:open\n"; got != want {
			t.Errorf("job %d holding GPU 1 printed %q, want %q: it must reach its own GPU and not job %d's", id, got, want, holder)
		}
		// Work that holds no GPU reaches none.
		id = submit(t, env, "--pool", "mixed", "--", "sh", "-c", probe)
		waitState(t, env, id, dspool.JobSucceeded, 30*time.Second)
		if got, want := cliOK(t, env, "job", "logs", itoa(id)), "gpu0:denied\ngpu1:denied\n"; got != want {
			t.Errorf("job %d holding no GPU printed %q, want %q", id, got, want)
		}
		show := cliOK(t, env, "job", "show", itoa(holder))
		if !strings.Contains(show, "NVIDIA A100-SXM4-40GB, 40GiB, GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77 (at work)") || !strings.Contains(show, "of type a100") {
			t.Errorf("job show %d does not describe the GPU it holds:\n%s", holder, show)
		}
		var shown dspool.Job
		if err := json.Unmarshal([]byte(cliOK(t, env, "job", "show", itoa(holder), "-o", "json")), &shown); err != nil || len(shown.GPUsHeld) != 1 || shown.GPUsHeld[0].UUID == "" || fmt.Sprint(shown.GPUsBusy) != "[0]" {
			t.Errorf("job show -o json: gpus_held %+v, gpus_busy %v (%v), want the GPU held with its UUID, at work", shown.GPUsHeld, shown.GPUsBusy, err)
		}
		node := cliOK(t, up.env(), "node", "show", a100)
		if !strings.Contains(node, "0    NVIDIA A100-SXM4-40GB, 40GiB, GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77 (held, at work)") ||
			!strings.Contains(node, "1    NVIDIA A100-SXM4-40GB, 40GiB, GPU-b2a3f0a9-6c1e-7d4e-8a0f-2f6f3c1e9d10 (free)") {
			t.Errorf("node show %s does not list its GPUs, GPU 0 held by job %d:\n%s", a100, holder, node)
		}
		cliOK(t, env, "job", "cancel", itoa(holder))
	})
}
