package server

import (
	"testing"

	"github.com/dspool/dspool/scheduler"
)

func TestHeadroomAfter(t *testing.T) {
	nodes := []scheduler.Node{
		{ID: "a", Pool: "p", FreeCPUs: 4000, FreeMem: 8 << 30, FreeGPUs: []int{0, 1}},
		{ID: "b", Pool: "p", FreeCPUs: 1000, FreeMem: 1 << 30},
		{ID: "c", Pool: "q", FreeCPUs: 2000, FreeMem: 2 << 30, Running: []scheduler.Running{{Job: 9, CPUs: 1000}}},
	}
	jobs := []scheduler.Job{{ID: 1, Pool: "p", CPUs: 3000, Memory: 1 << 30, GPUs: 1}}
	plan := []scheduler.Placement{{Job: 1, Node: "a", GPUs: []int{0}}}
	h := headroomAfter(nodes, jobs, plan)
	if got := h["p"]; got.cpus != 1000 || got.mem != 7<<30 || got.gpus != 1 {
		t.Errorf("pool p: got %+v, want 1 cpu, 7GiB, 1 gpu", got)
	}
	if got := h["q"]; got.cpus != 2000 || !got.preempt || h["p"].preempt {
		t.Errorf("pool q: got %+v, want 2 cpus and preemptible work; pool p: %+v, want none", got, h["p"])
	}
}

// TestSubmittedKicksOnlyWhenItMayFit: a job bigger than any node's room
// does not start a pass, and is kicked later once a pass shows room.
func TestSubmittedKicksOnlyWhenItMayFit(t *testing.T) {
	s := New(Config{})
	drain := func() bool {
		select {
		case <-s.kick:
			return true
		default:
			return false
		}
	}
	s.submitted("p", 1000, 1<<20, 0)
	if !drain() {
		t.Error("unknown headroom: want a kick")
	}
	s.setHeadroom(map[string]headroom{"p": {cpus: 500, mem: 1 << 30}})
	s.submitted("p", 1000, 1<<20, 0)
	if drain() {
		t.Error("job bigger than the room: want no kick")
	}
	s.submitted("other", 100, 1<<20, 0)
	if drain() {
		t.Error("pool with no ready node: want no kick")
	}
	s.setHeadroom(map[string]headroom{"p": {cpus: 2000, mem: 1 << 30}})
	if !drain() {
		t.Error("room appeared after a skipped submission: want a kick")
	}
	s.submitted("p", 1000, 1<<20, 0)
	if !drain() {
		t.Error("job within the room: want a kick")
	}
	s.setHeadroom(map[string]headroom{"p": {cpus: 500, mem: 1 << 30, preempt: true}})
	s.submitted("p", 1000, 1<<20, 0)
	if !drain() {
		t.Error("job bigger than the room of a pool running preemptible work, which it may evict: want a kick")
	}
}
