package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/autoscale/sim"
	"github.com/dspool/dspool/cli"
)

func simulate(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &cli.App{Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(stdin), Getenv: func(string) string { return "" }}
	code = a.Run(context.Background(), append([]string{"simulate"}, args...))
	return code, out.String(), errOut.String()
}

const (
	weekTrace = "../autoscale/sim/testdata/team-week.csv"
	weekPools = "../autoscale/sim/testdata/team-pools.yaml"
)

func TestSimulateWeek(t *testing.T) {
	code, out, errOut := simulate(t, "", "--trace", weekTrace, "--pools", weekPools)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"1070 jobs and 215 sessions from 2026-06-01 00:00 +0100", "POOL", "VS LOWER BOUND",
		"interactive  pools file", "total        lower bound", "1.00x"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = simulate(t, "", "--trace", weekTrace, "--pools", weekPools, "--boot-time", "2m", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r sim.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(r.Policies) != 4 || r.Policies[3].Name != sim.PolicyLowerBound || len(r.Policies[0].Pools) != 3 {
		t.Fatalf("got %d policies, want 4 with 3 pools each", len(r.Policies))
	}
	if got := r.Policy(sim.PolicyOwn).Total.Sessions.P95S; got != 120 {
		t.Errorf("p95 session wait with 2m boots: got %.0f s, want 120", got)
	}
}

func TestSimulateStdinAndErrors(t *testing.T) {
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.yaml")
	if err := os.WriteFile(pools, []byte("name: batch\nnode: {cpus: 4, memory: 8GiB}\nwork: [batch]\nautoscale: {min: 0, max: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	trace := sim.TraceHeader + "\n0s,job,batch,ana,1,1GiB,,1h\n"
	code, out, errOut := simulate(t, trace, "--trace", "-", "--pools", pools)
	if code != 0 || !strings.Contains(out, "batch  pools file") {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	for _, tt := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"no trace", "", []string{"--pools", pools}, "--trace: give the workload trace"},
		{"no pools", "", []string{"--trace", "-"}, "--pools: give the pools file"},
		{"bad line", sim.TraceHeader + "\n0s,job,batch,ana,many,1GiB,,1h\n", []string{"--trace", "-", "--pools", pools}, `-: line 2: cpus: "many" is not a number of cpus`},
		{"unknown pool", sim.TraceHeader + "\n0s,job,gpu,ana,1,1GiB,,1h\n", []string{"--trace", "-", "--pools", pools}, "line 2: pool: there is no pool gpu"},
		{"boot time", trace, []string{"--trace", "-", "--pools", pools, "--boot-time", "1500ms"}, "boot-time: 1.5s: give whole seconds"},
		{"output", trace, []string{"--trace", "-", "--pools", pools, "-o", "yaml"}, `"yaml" is not an output format`},
		{"arguments", "", []string{"week.csv"}, "dspool simulate takes no arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := simulate(t, tt.stdin, tt.args...)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q, want it to contain %q", code, errOut, tt.want)
			}
		})
	}
}
