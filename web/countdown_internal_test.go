package web

import (
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func TestIdleCountdown(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	since := now.Add(-4 * time.Minute)
	auto := &dspool.Pool{Name: "burst", Autoscale: &dspool.Autoscale{Min: 0, Max: 3, IdleTimeout: dspool.Duration(10 * time.Minute)}}
	floor := &dspool.Pool{Name: "warm", Autoscale: &dspool.Autoscale{Min: 1, Max: 3}}
	fixed := &dspool.Pool{Name: "fixed", Count: 2}
	for _, tc := range []struct {
		name  string
		pool  *dspool.Pool
		node  dspool.Node
		ready int
		want  string
	}{
		{"counts down", auto, dspool.Node{State: dspool.NodeReady, IdleSince: &since}, 2, "idle for 4m0s: removed in 6m0s unless work arrives"},
		{"past its time", auto, dspool.Node{State: dspool.NodeReady, IdleSince: ptr(now.Add(-11 * time.Minute))}, 2, "idle for 11m0s: being removed"},
		{"at the pool's minimum", floor, dspool.Node{State: dspool.NodeReady, IdleSince: &since}, 1, "idle for 4m0s; stays: the pool keeps at least 1 node"},
		{"the default timeout", floor, dspool.Node{State: dspool.NodeReady, IdleSince: &since}, 2, "idle for 4m0s: removed in 6m0s unless work arrives"},
		{"busy", auto, dspool.Node{State: dspool.NodeReady}, 2, ""},
		{"draining", auto, dspool.Node{State: dspool.NodeDraining, IdleSince: &since}, 2, ""},
		{"a pool of fixed size", fixed, dspool.Node{State: dspool.NodeReady, IdleSince: &since}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := idleCountdown(tc.pool, &tc.node, tc.ready, now); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSSHCommand(t *testing.T) {
	for _, tc := range []struct{ addr, host, want string }{
		{"127.0.0.1:2222", "127.0.0.1:8080", "ssh -p 2222 ada@127.0.0.1"},
		{"0.0.0.0:2222", "pool.example:8080", "ssh -p 2222 ada@pool.example"},
		{"[::]:22", "pool.example", "ssh ada@pool.example"},
		{"gw.example:2200", "pool.example", "ssh -p 2200 ada@gw.example"},
	} {
		if got := sshCommand(tc.addr, tc.host, "ada"); got != tc.want {
			t.Errorf("sshCommand(%q, %q) = %q, want %q", tc.addr, tc.host, got, tc.want)
		}
	}
}
