package autoscale_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// engine is a hand-written fake of a provider's engine that counts lists.
type engine struct {
	mu    sync.Mutex
	insts []autoscale.Instance
	lists int
	fail  error
}

func (e *engine) Grow(_ context.Context, req autoscale.GrowRequest) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	for range req.Joins {
		n := req.Pool.Name + "-" + string(rune('a'+len(e.insts)))
		e.insts = append(e.insts, autoscale.Instance{Name: n, State: autoscale.InstanceCreating})
		names = append(names, n)
	}
	return names, nil
}

func (e *engine) Remove(context.Context, *dspool.Pool, []string) error { return nil }

func (e *engine) List(context.Context, *dspool.Pool) ([]autoscale.Instance, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lists++
	if e.fail != nil {
		return nil, e.fail
	}
	return append([]autoscale.Instance(nil), e.insts...), nil
}

func (e *engine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lists
}

func TestCacheListsNoFasterThanItsPolicy(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	e := &engine{}
	c := autoscale.NewCache(e, autoscale.ListPolicy{Every: 30 * time.Second, Changing: 5 * time.Second, MinGap: 2 * time.Second}, clock)
	pool := &dspool.Pool{Name: "hpc"}
	pass := func() []autoscale.Instance {
		t.Helper()
		insts, err := c.List(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		return insts
	}
	// A minute of one pass a second with nothing changing: two lists.
	for i := 0; i < 60; i++ {
		pass()
		now = now.Add(time.Second)
	}
	if got := e.count(); got != 2 {
		t.Fatalf("a quiet minute of passes listed the engine %d times, want 2", got)
	}
	// A grow shows at once, and a node that is being created is read
	// every 5 s.
	names, err := c.Grow(ctx, autoscale.GrowRequest{Pool: pool, Joins: make([]autoscale.Join, 1)})
	if err != nil || len(names) != 1 {
		t.Fatal(names, err)
	}
	if insts := pass(); len(insts) != 1 || insts[0].Name != names[0] {
		t.Fatalf("right after Grow: %+v", insts)
	}
	before := e.count()
	for i := 0; i < 20; i++ {
		pass()
		now = now.Add(time.Second)
	}
	if got := e.count() - before; got < 3 || got > 5 {
		t.Fatalf("20 s with a node being created listed the engine %d times, want 4 (every 5 s)", got)
	}
	// Changed asks for a read, but never before MinGap since the last.
	before = e.count()
	c.Changed("hpc")
	pass()
	now = now.Add(2 * time.Second)
	c.Changed("hpc")
	pass()
	pass()
	if got := e.count() - before; got > 2 {
		t.Fatalf("two changes 2 s apart listed the engine %d times, want at most 2", got)
	}
	// A failing engine: the last list is still given with the error, and
	// the engine is asked again only after a backoff.
	e.mu.Lock()
	e.fail = errors.New("slurm_load_jobs error: Unable to contact slurm controller")
	e.mu.Unlock()
	now = now.Add(31 * time.Second)
	insts, err := c.List(ctx, pool)
	if err == nil || len(insts) != 1 {
		t.Fatalf("a failed list gave %+v, %v: want the last list and the error", insts, err)
	}
	before = e.count()
	for i := 0; i < 3; i++ {
		_, _ = c.List(ctx, pool)
	}
	if got := e.count() - before; got != 0 {
		t.Fatalf("right after a failure the engine was listed %d more times", got)
	}
}

func TestCacheIsPerPool(t *testing.T) {
	ctx := context.Background()
	e := &engine{}
	c := autoscale.NewCache(e, autoscale.ListPolicy{Every: time.Minute}, nil)
	a, b := &dspool.Pool{Name: "a"}, &dspool.Pool{Name: "b"}
	if _, err := c.List(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := e.count(); got != 2 {
		t.Fatalf("two pools listed %d times, want once each", got)
	}
}

func TestBackoffByClass(t *testing.T) {
	for _, tt := range []struct {
		class    autoscale.Class
		failures int
		want     time.Duration
	}{
		{autoscale.ClassOther, 1, 5 * time.Second},
		{autoscale.ClassCapacity, 2, 10 * time.Second},
		{autoscale.ClassQuota, 1, time.Minute},
		{autoscale.ClassUnschedulable, 3, 4 * time.Minute},
		{autoscale.ClassOther, 20, 5 * time.Minute},
	} {
		if got := autoscale.Backoff(tt.class, tt.failures); got != tt.want {
			t.Errorf("Backoff(%s, %d) = %s, want %s", tt.class, tt.failures, got, tt.want)
		}
	}
	err := &autoscale.Error{Class: autoscale.ClassQuota, Engine: "slurm", Message: "QOSMaxSubmitJobPerUserLimit"}
	if got := autoscale.ClassOf(errors.Join(errors.New("grow"), err)); got != autoscale.ClassQuota {
		t.Errorf("ClassOf a wrapped quota error = %s", got)
	}
	if got := autoscale.ClassOf(errors.New("boom")); got != autoscale.ClassOther {
		t.Errorf("ClassOf a plain error = %s", got)
	}
}
