package slurm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/autoscale/providertest"
	"github.com/dspool/dspool/provider/slurm"
	"github.com/dspool/dspool/provider/slurm/slurmtest"
)

var (
	cluster *slurmtest.Cluster
	why     string
)

func TestMain(m *testing.M) {
	var err error
	cluster, why, err = slurmtest.Start(2, 4)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	os.Exit(code)
}

var pools atomic.Int64

// fakeAgent stands in for `dspool agent` in the allocation: it writes its
// command line and the join token it got to DIR/NAME, then runs until
// cancelled.
func fakeAgent(t *testing.T) (exe, dir string) {
	dir, err := os.MkdirTemp("", "dspool-slurm-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe = filepath.Join(dir, "dspool")
	body := `#!/bin/sh
name=""; prev=""
for a in "$@"; do [ "$prev" = --name ] && name=$a; prev=$a; done
{ printf '%s\n' "$*"; printf '%s\n' "$DSPOOL_JOIN_TOKEN"; } > ` + dir + `/$name.tmp && mv ` + dir + `/$name.tmp ` + dir + `/$name
exec sleep 600
`
	if err := os.WriteFile(exe, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return exe, dir
}

func settings(t *testing.T, s map[string]any) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range s {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	return out
}

func newPool(t *testing.T, reg *autoscale.Registry, s map[string]any) *dspool.Pool {
	p := &dspool.Pool{Name: fmt.Sprintf("sl%d", pools.Add(1)), Provider: dspool.ProviderSpec{Name: "slurm", Settings: settings(t, s)},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 100 << 20}}
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check("", p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformance(t *testing.T) {
	if cluster == nil {
		slurmtest.Skip(t, why)
	}
	kind := slurm.Kind(slurm.Options{Env: cluster.Env(), Share: "/tmp"})
	reg, err := autoscale.NewRegistry(kind)
	if err != nil {
		t.Fatal(err)
	}
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		exe, dir := fakeAgent(t)
		prov := slurm.New(slurm.Options{Env: cluster.Env(), Share: "/tmp"})
		base := map[string]any{"partition": cluster.Partition, "dspool": exe, "state": dir + "/state", "logs": dir}
		h := &providertest.Harness{Provider: prov, Pool: newPool(t, reg, base), Other: newPool(t, reg, base), List: kind.List}
		h.Refused = newPool(t, reg, map[string]any{"partition": "nosuch", "dspool": exe})
		h.RefusedClass = autoscale.ClassUnschedulable
		h.Queued = newPool(t, reg, map[string]any{"partition": cluster.Partition, "dspool": exe, "logs": dir, "options": []string{"--begin=now+1hour"}})
		h.Started = func(t *testing.T, name string) ([]string, string) {
			deadline := time.Now().Add(60 * time.Second)
			for {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err == nil {
					lines := strings.SplitN(string(b), "\n", 3)
					return strings.Fields(lines[0]), strings.TrimSpace(lines[1])
				}
				if time.Now().After(deadline) {
					t.Fatalf("the allocation of %s did not start its agent within 60 s: %s", name, cluster.Squeue())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Cleanup(func() {
			ctx := context.Background()
			for _, p := range []*dspool.Pool{h.Pool, h.Other, h.Queued} {
				insts, _ := prov.List(ctx, p)
				var names []string
				for _, in := range insts {
					names = append(names, in.Name)
				}
				_ = prov.Remove(ctx, p, names)
			}
		})
		return h
	})
}

func TestSettings(t *testing.T) {
	reg, err := autoscale.NewRegistry(slurm.Kind(slurm.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		settings  map[string]any
		cpus      dspool.MilliCPU
		wantField string
	}{
		{"defaults", map[string]any{}, 1000, ""},
		{"all", map[string]any{"partition": "debug", "time": "1d", "account": "lab", "qos": "normal", "constraint": "a100", "options": []string{"--exclusive"}, "dspool": "/usr/bin/dspool", "share": "/mnt/dspool", "state": "/var/tmp/d", "logs": "/var/log/dspool"}, 2000, ""},
		{"unknown setting", map[string]any{"zone": "x"}, 1000, "pools[0].provider.zone"},
		{"partition of two words", map[string]any{"partition": "a b"}, 1000, "pools[0].provider.partition"},
		{"bad time", map[string]any{"time": "soon"}, 1000, "pools[0].provider.time"},
		{"an option dspool sets", map[string]any{"options": []string{"--mem=1G"}}, 1000, "pools[0].provider.options[0]"},
		{"an option of two words", map[string]any{"options": []string{"--begin now"}}, 1000, "pools[0].provider.options[0]"},
		{"a relative path", map[string]any{"dspool": "bin/dspool"}, 1000, "pools[0].provider.dspool"},
		{"part of a cpu", map[string]any{}, 1500, "pools[0].node.cpus"},
		{"time as a number", map[string]any{"time": 5}, 1000, "pools[0].provider.time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &dspool.Pool{Name: "hpc", Provider: dspool.ProviderSpec{Name: "slurm", Settings: settings(t, tt.settings)},
				Node: dspool.NodeSize{CPUs: tt.cpus, Memory: 1 << 30}}
			if err := p.Normalize("pools[0]."); err != nil {
				t.Fatal(err)
			}
			err := reg.Check("pools[0].", p)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if string(p.Provider.Settings["state"]) == "" {
					t.Errorf("the default state directory was not filled in: %v", p.Provider.Settings)
				}
				return
			}
			e, ok := err.(*dspool.Error)
			if !ok || e.Field != tt.wantField {
				t.Errorf("got %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}
