package server

import (
	"testing"
	"time"

	"github.com/dspool/dspool/scheduler"
)

// TestPreempting: the jobs a pass made room for by evictions are those the
// autoscaler leaves out; one placed by a later pass gives back when its
// eviction was decided, once; one that no longer waits is forgotten.
func TestPreempting(t *testing.T) {
	var p preempting
	t0 := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	p.set([]scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{10}}, {Job: 2, Node: "n2", Victims: []int64{20}}}, nil, t0)
	if !p.waits(1) || !p.waits(2) || p.waits(3) {
		t.Fatalf("after the first pass: waits 1 %v, 2 %v, 3 %v; want true, true, false", p.waits(1), p.waits(2), p.waits(3))
	}
	// The next pass: job 1 still waits (for evictions under way), job 2
	// is placed, job 3 preempts.
	t1 := t0.Add(time.Second)
	p.set([]scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{}}, {Job: 3, Node: "n3", Victims: []int64{30}}},
		[]scheduler.Placement{{Job: 2, Node: "n2"}}, t1)
	if at, ok := p.placed(2); !ok || !at.Equal(t0) {
		t.Errorf("job 2 placed: decided at %s (%v), want %s", at, ok, t0)
	}
	if _, ok := p.placed(2); ok {
		t.Error("job 2 placed twice: want its decision given back once")
	}
	p.set(nil, nil, t1.Add(time.Second))
	if p.waits(1) || p.waits(3) {
		t.Error("a pass without preemptions: want no job waiting for one")
	}
	if at, ok := p.placed(1); ok {
		t.Errorf("job 1, forgotten: placed gives %s", at)
	}
}
