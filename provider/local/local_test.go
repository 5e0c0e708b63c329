package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/autoscale/providertest"
)

// fakeAgent writes a script that stands in for `dspool agent`: it records
// its arguments and runs until stopped, or exits at once when told to.
func fakeAgent(t *testing.T, body string) string {
	exe := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

func newProvider(t *testing.T, exe string) *Provider {
	p := New(Options{Exe: exe, Server: "http://127.0.0.1:1", DataDir: t.TempDir(), Share: t.TempDir(),
		JoinToken: func(string) (string, error) { return "dspj_test", nil }, RestartDelay: 50 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Stop(ctx)
	})
	return p
}

func pool(name string) *dspool.Pool {
	return &dspool.Pool{Name: name, Provider: dspool.Provider(dspool.ProviderLocal), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}
}

func TestConformance(t *testing.T) {
	exe := fakeAgent(t, "exec sleep 600")
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		return &providertest.Harness{Provider: newProvider(t, exe), Pool: pool("cpu"), Other: pool("gpu")}
	})
}

func TestRestartsAnAgentThatExits(t *testing.T) {
	dir := t.TempDir()
	// The first start exits at once; later starts run.
	exe := fakeAgent(t, `if [ ! -e `+dir+`/ran ]; then touch `+dir+`/ran; exit 3; fi; touch `+dir+`/again; exec sleep 600`)
	p := newProvider(t, exe)
	names, err := p.Grow(context.Background(), providertest.Request(pool("cpu"), 1))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(filepath.Join(dir, "again")); err == nil {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the agent that exited was not started again")
		case <-tick.C:
		}
	}
	inst, _ := p.List(context.Background(), pool("cpu"))
	if len(inst) != 1 || inst[0].Name != names[0] {
		t.Fatalf("after a restart List gives %v, want %v", inst, names)
	}
}

func TestRemoveDeletesStateAndStopsAgent(t *testing.T) {
	p := newProvider(t, fakeAgent(t, "exec sleep 600"))
	names, err := p.Grow(context.Background(), providertest.Request(pool("cpu"), 2))
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(p.opts.DataDir, "agents", names[0])
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state directory for %s: %v", names[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Remove(ctx, pool("cpu"), names[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the removed node's state is still there: %v", err)
	}
	// The lowest free name is used again, by a fresh node.
	again, err := p.Grow(context.Background(), providertest.Request(pool("cpu"), 1))
	if err != nil || len(again) != 1 || again[0] != names[0] {
		t.Fatalf("Grow after Remove gave %v, %v; want [%s]", again, err, names[0])
	}
}

// TestGrowAfterStop: once stopped (the control plane is shutting down), Grow
// starts nothing and says so with autoscale.ErrStopping, which the
// autoscaler does not report as a provider failure.
func TestGrowAfterStop(t *testing.T) {
	p := newProvider(t, fakeAgent(t, "exec sleep 600"))
	ctx := context.Background()
	if names, err := p.Grow(ctx, providertest.Request(pool("cpu"), 1)); err != nil || len(names) != 1 {
		t.Fatalf("grow: %v, %v", names, err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p.Stop(stopCtx)
	names, err := p.Grow(ctx, providertest.Request(pool("cpu"), 1))
	if len(names) != 0 || !errors.Is(err, autoscale.ErrStopping) {
		t.Fatalf("grow after stop: %v, %v; want nothing and autoscale.ErrStopping", names, err)
	}
}
