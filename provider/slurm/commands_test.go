package slurm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/autoscale/providertest"
	"github.com/dspool/dspool/provider/slurm"
)

// fakeSlurm writes stand-ins for Slurm's commands into a directory: each
// records its arguments, environment and stdin under dir/NAME.N, then runs
// its body. They test what the provider says to Slurm and how it reads the
// answers, where no Slurm runs.
func fakeSlurm(t *testing.T, bodies map[string]string) string {
	dir := t.TempDir()
	for _, name := range []string{"sbatch", "squeue", "scancel", "scontrol"} {
		body := bodies[name]
		script := `#!/bin/sh
n=$(ls ` + dir + `/` + name + `.*.args 2>/dev/null | wc -l)
printf '%s\n' "$@" > ` + dir + `/` + name + `.$n.args
env > ` + dir + `/` + name + `.$n.env
cat > ` + dir + `/` + name + `.$n.stdin
` + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func read(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hpc(t *testing.T, s map[string]any) *dspool.Pool {
	reg, err := autoscale.NewRegistry(slurm.Kind(slurm.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	p := &dspool.Pool{Name: "hpc", Provider: dspool.ProviderSpec{Name: "slurm", Settings: settings(t, s)},
		Node: dspool.NodeSize{CPUs: 4000, Memory: 3<<30 + 1, GPUs: 2}}
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check("", p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWhatSbatchIsGiven(t *testing.T) {
	bin := fakeSlurm(t, map[string]string{"sbatch": "echo 4242"})
	p := slurm.New(slurm.Options{Bin: bin, Exe: "/opt/dspool/bin/dspool", Share: "/mnt/share"})
	pool := hpc(t, map[string]any{"partition": "gpu", "time": "1d", "account": "lab", "qos": "high", "constraint": "a100", "options": []string{"--exclusive"}})
	req := providertest.Request(pool, 1)
	names, err := p.Grow(context.Background(), req)
	if err != nil || len(names) != 1 || !strings.HasPrefix(names[0], "hpc-") {
		t.Fatalf("Grow = %v, %v", names, err)
	}
	args := strings.Split(strings.TrimSpace(read(t, filepath.Join(bin, "sbatch.0.args"))), "\n")
	for _, want := range []string{"--parsable", "--job-name=dspool.hpc." + names[0], "--cpus-per-task=4", "--mem=3073M", "--gres=gpu:2",
		"--output=/tmp/dspool-" + names[0] + "-%j.log", "--partition=gpu", "--account=lab", "--qos=high", "--constraint=a100", "--time=1440", "--exclusive", "--export=ALL"} {
		if !contains(args, want) {
			t.Errorf("sbatch was not given %s: %q", want, args)
		}
	}
	secret, _, _ := strings.Cut(req.Joins[0].Token, ".")
	if env := read(t, filepath.Join(bin, "sbatch.0.env")); !strings.Contains(env, "DSPOOL_JOIN_TOKEN="+req.Joins[0].Token+"\n") {
		t.Errorf("the join token is not in sbatch's environment")
	}
	script := read(t, filepath.Join(bin, "sbatch.0.stdin"))
	if strings.Contains(script, secret) || strings.Contains(strings.Join(args, " "), secret) {
		t.Errorf("the join token is in the batch script or on sbatch's command line")
	}
	for _, want := range []string{"exec '/opt/dspool/bin/dspool' 'agent' '--server' 'https://127.0.0.1:1' '--name' '" + names[0] + "'",
		"'--share' '/mnt/share'", "'--state' '/tmp/dspool-slurm/" + names[0] + "'", "'--cpus' '4'", "'--gpus' '2'"} {
		if !strings.Contains(script, want) {
			t.Errorf("the batch script lacks %s:\n%s", want, script)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSbatchRefusalsAreClassed(t *testing.T) {
	for _, tt := range []struct {
		says string
		want autoscale.Class
	}{
		{"sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)", autoscale.ClassQuota},
		{"sbatch: error: QOSMaxSubmitJobPerUserLimit", autoscale.ClassQuota},
		{"sbatch: error: Batch job submission failed: Invalid partition name specified", autoscale.ClassUnschedulable},
		{"sbatch: error: Batch job submission failed: Requested node configuration is not available", autoscale.ClassUnschedulable},
		{"sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", autoscale.ClassOther},
	} {
		bin := fakeSlurm(t, map[string]string{"sbatch": "echo '" + strings.ReplaceAll(tt.says, "'", "") + "' >&2; exit 1"})
		p := slurm.New(slurm.Options{Bin: bin, Exe: "/usr/bin/dspool", Share: "/mnt"})
		_, err := p.Grow(context.Background(), providertest.Request(hpc(t, map[string]any{}), 1))
		var e *autoscale.Error
		if !errors.As(err, &e) || e.Class != tt.want || e.Engine != "slurm" || !strings.Contains(e.Message, strings.ReplaceAll(tt.says, "'", "")) {
			t.Errorf("sbatch said %q: got %v, want class %s in its words", tt.says, err, tt.want)
		}
	}
}

func TestSqueueIsRead(t *testing.T) {
	q := `1|dspool.hpc.hpc-a|PENDING|Resources|2026-12-07T10:00:00|gpu|
2|dspool.hpc.hpc-b|PENDING|QOSMaxJobsPerUserLimit|2026-12-07T10:00:00|gpu|
3|dspool.hpc.hpc-c|RUNNING|None|2026-12-07T10:00:00|gpu|n1
4|dspool.hpc.hpc-d|FAILED|NonZeroExitCode|2026-12-07T10:00:00|gpu|n2
5|dspool.hpc.hpc-e|CANCELLED|None|2026-12-07T10:00:00|gpu|n1
6|dspool.hpc.hpc-f|COMPLETING|None|2026-12-07T10:00:00|gpu|n1
7|dspool.hpc2.hpc2-a|RUNNING|None|2026-12-07T10:00:00|gpu|n1
8|someone-else|RUNNING|None|2026-12-07T10:00:00|gpu|n1
9|dspool.hpc.hpc-g|PENDING|PartitionDown|2026-12-07T10:00:00|gpu|`
	bin := fakeSlurm(t, map[string]string{"squeue": "cat <<'EOF'\n" + q + "\nEOF", "scontrol": "echo 'JobId=4 JobState=FAILED ExitCode=127:0'"})
	p := slurm.New(slurm.Options{Bin: bin, Exe: "/usr/bin/dspool", Share: "/mnt"})
	pool := hpc(t, map[string]any{})
	for round := 0; round < 2; round++ {
		insts, err := p.List(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]autoscale.Instance{}
		for _, in := range insts {
			got[in.Name] = in
		}
		if len(got) != 5 {
			t.Fatalf("List gave %d instances, want hpc-a, -b, -c, -d and -g: %+v", len(got), insts)
		}
		check := func(name string, state autoscale.InstanceState, class autoscale.Class, words string) {
			t.Helper()
			in := got[name]
			if in.State != state || (class == "") != (in.Err == nil) || (in.Err != nil && (in.Err.Class != class || !strings.Contains(in.Err.Message, words))) {
				t.Errorf("%s: %+v (err %v), want %s, %s, %q", name, in, in.Err, state, class, words)
			}
		}
		check("hpc-a", autoscale.InstanceCreating, autoscale.ClassCapacity, "job 1 pending in partition gpu: Resources")
		check("hpc-b", autoscale.InstanceCreating, autoscale.ClassQuota, "QOSMaxJobsPerUserLimit")
		check("hpc-c", autoscale.InstanceRunning, "", "")
		check("hpc-d", autoscale.InstanceFailed, autoscale.ClassImage, "exited 127 on n2: the dspool binary /usr/bin/dspool is not there")
		check("hpc-g", autoscale.InstanceCreating, autoscale.ClassUnschedulable, "PartitionDown")
		if got["hpc-a"].Created.IsZero() {
			t.Errorf("no submit time")
		}
	}
	if n := p.Calls()["scontrol"]; n != 1 {
		t.Errorf("two lists asked scontrol %d times about one failed job, want once", n)
	}
	if args := read(t, filepath.Join(bin, "squeue.0.args")); !strings.Contains(args, "--me\n") {
		t.Errorf("squeue does not list only the control plane's user's jobs: %q", args)
	}
	// Remove cancels the pool's jobs in one scancel, another pool's never.
	if err := p.Remove(context.Background(), pool, []string{"hpc-a", "hpc-c", "hpc2-a"}); err != nil {
		t.Fatal(err)
	}
	if args := strings.Fields(read(t, filepath.Join(bin, "scancel.0.args"))); strings.Join(args, " ") != "1 3" {
		t.Errorf("scancel was given %q, want the jobs 1 and 3", args)
	}
}

func TestAHungCommandTimesOut(t *testing.T) {
	bin := fakeSlurm(t, map[string]string{"squeue": "exec sleep 30"})
	p := slurm.New(slurm.Options{Bin: bin, Timeout: 300 * time.Millisecond})
	began := time.Now()
	_, err := p.List(context.Background(), hpc(t, map[string]any{}))
	if err == nil || time.Since(began) > 10*time.Second {
		t.Fatalf("a squeue that hangs: %v after %s, want an error within the timeout", err, time.Since(began))
	}
}
