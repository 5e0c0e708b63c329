package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/dspooltest"
)

func applyPool(t *testing.T, p *dspooltest.Pool, pool *dspool.Pool) {
	t.Helper()
	if _, err := p.Admin.ApplyPools(context.Background(), []*dspool.Pool{pool}); err != nil {
		t.Fatal(err)
	}
}

func poolEvents(t *testing.T, p *dspooltest.Pool, pool string) []*dspool.PoolEvent {
	t.Helper()
	evs, err := p.DB.PoolEvents(context.Background(), pool, time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func findEvent(evs []*dspool.PoolEvent, kind, part string) *dspool.PoolEvent {
	for _, e := range evs {
		if e.Kind == kind && strings.Contains(e.Message, part) {
			return e
		}
	}
	return nil
}

// TestScaleOutSizedToDemand: five jobs needing one GPU each, on one-GPU
// nodes of a pool at zero, bring five nodes at once (within a second), with
// the reason in the pool's events; max caps what a larger burst brings.
func TestScaleOutSizedToDemand(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48000})
	prov := p.UseProvider()
	applyPool(t, p, &dspool.Pool{Name: "gpu", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30, GPUs: 1}, Autoscale: &dspool.Autoscale{Max: 6}})
	began := time.Now()
	var ids []int64
	for i := 0; i < 7; i++ {
		ids = append(ids, submit(t, p.Admin, dspool.JobSpec{Pool: "gpu", GPUs: 1, Memory: 64 << 20, Command: []string{"sleep", "1"}}).ID)
		if i == 4 {
			p.Eventually(time.Second, func() bool { g, _ := prov.Counts(); return g == 5 }, "five nodes asked for within 1s of five jobs")
			t.Logf("five 1-gpu jobs -> five nodes asked for in %s", time.Since(began).Round(time.Millisecond))
		}
	}
	for _, id := range ids {
		if j := p.Wait(p.Admin, id); j.State != dspool.JobSucceeded {
			t.Fatalf("job %d: %s %s", id, j.State, j.Message)
		}
	}
	if g, _ := prov.Counts(); g != 6 {
		t.Fatalf("%d nodes were asked for; max is 6", g)
	}
	evs := poolEvents(t, p, "gpu")
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Kind+": "+e.Message)
	}
	t.Logf("events:\n%s", strings.Join(msgs, "\n"))
	if findEvent(evs, dspool.EventScaleOut, "need 1 gpu each and no node has one free") == nil &&
		findEvent(evs, dspool.EventScaleOut, "added 5 nodes: 5 queued jobs need 1 gpu each") == nil {
		t.Fatalf("no scale_out event with the reason")
	}
	if findEvent(evs, dspool.EventWaiting, "pool gpu is at its max of 6 nodes") == nil {
		t.Fatalf("no waiting event at max: %+v", evs)
	}
}

// TestScaleInRacesPlacement: jobs arrive just as the pool's only node
// reaches its idle timeout, again and again. Either the job lands on the
// node, which then stays, or the node goes and a new one comes for the job:
// no attempt is ever lost to a removal.
func TestScaleInRacesPlacement(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48100})
	prov := p.UseProvider()
	applyPool(t, p, &dspool.Pool{Name: "burst", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &dspool.Autoscale{Max: 1, IdleTimeout: dspool.Duration(time.Second)}})
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 12; i++ {
		j := submit(t, p.Admin, dspool.JobSpec{Pool: "burst", Memory: 64 << 20, Command: []string{"true"}})
		j = p.Wait(p.Admin, j.ID)
		if j.State != dspool.JobSucceeded || j.Attempt != 1 {
			t.Fatalf("job %d: %s (attempt %d) %s", j.ID, j.State, j.Attempt, j.Message)
		}
		// The next job arrives around the moment the node has been idle for
		// 1s: the arrival time is what this test varies.
		<-time.After(850*time.Millisecond + time.Duration(r.IntN(300))*time.Millisecond)
	}
	grown, removed := prov.Counts()
	t.Logf("12 jobs at the idle timeout: %d nodes added, %d removed", grown, removed)
	if removed == 0 {
		t.Fatalf("no node was removed: the test did not reach the idle timeout")
	}
	jobs, err := p.Admin.Jobs(context.Background(), api.JobQuery{AllUsers: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Jobs {
		if j.Reason == dspool.ReasonNodeLost {
			t.Fatalf("job %d lost its node: %s", j.ID, j.Message)
		}
	}
}

// TestProviderFailureBacksOff: a provider that refuses (quota) is retried
// with backoff, its reason is an event and what a queued job shows, and the
// pool grows once the provider recovers.
func TestProviderFailureBacksOff(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48200})
	prov := p.UseProvider()
	prov.Fail(errors.New("quota exceeded for cpus in region lab"))
	applyPool(t, p, &dspool.Pool{Name: "burst", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &dspool.Autoscale{Max: 2}})
	j := submit(t, p.Admin, dspool.JobSpec{Pool: "burst", Memory: 64 << 20, Command: []string{"true"}})
	p.Eventually(3*time.Second, func() bool {
		return findEvent(poolEvents(t, p, "burst"), dspool.EventProviderError, "quota exceeded") != nil
	}, "a provider_error event")
	ev := findEvent(poolEvents(t, p, "burst"), dspool.EventProviderError, "quota exceeded")
	if !strings.Contains(ev.Message, "trying again in 5s") {
		t.Fatalf("the event does not say when it tries again: %q", ev.Message)
	}
	p.Eventually(3*time.Second, func() bool {
		got, err := p.Admin.Job(context.Background(), j.ID)
		return err == nil && strings.Contains(got.Waiting, "quota exceeded")
	}, "the queued job to show the provider's reason")
	// Backing off: no second try for 2 s (the loop runs every second).
	errorsSoFar := func() int {
		n := 0
		for _, e := range poolEvents(t, p, "burst") {
			if e.Kind == dspool.EventProviderError {
				n++
			}
		}
		return n
	}
	quiet := time.After(2 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		if n := errorsSoFar(); n != 1 {
			t.Fatalf("%d provider errors within 2s of the first: the pool is not backing off", n)
		}
		select {
		case <-quiet:
			done = true
		case <-tick.C:
		}
	}
	prov.Fail(nil)
	if got := p.Wait(p.Admin, j.ID); got.State != dspool.JobSucceeded {
		t.Fatalf("job %d: %s %s", j.ID, got.State, got.Message)
	}
}

// TestProviderErrorClass: an engine's refusal keeps its class and words in
// the event and in the queued job's wait, and a quota refusal backs off
// for a minute, not 5 s: it does not mend by itself soon.
func TestProviderErrorClass(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48300})
	prov := p.UseProvider()
	prov.Fail(&autoscale.Error{Class: autoscale.ClassQuota, Engine: "slurm",
		Message: "sbatch: error: QOSMaxSubmitJobPerUserLimit"})
	applyPool(t, p, &dspool.Pool{Name: "hpc", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &dspool.Autoscale{Max: 2}})
	j := submit(t, p.Admin, dspool.JobSpec{Pool: "hpc", Memory: 64 << 20, Command: []string{"true"}})
	p.Eventually(3*time.Second, func() bool {
		return findEvent(poolEvents(t, p, "hpc"), dspool.EventProviderError, "QOSMaxSubmitJobPerUserLimit") != nil
	}, "a provider_error event in the engine's words")
	ev := findEvent(poolEvents(t, p, "hpc"), dspool.EventProviderError, "QOSMaxSubmitJobPerUserLimit")
	if !strings.Contains(ev.Message, "slurm (quota)") || !strings.Contains(ev.Message, "trying again in 1m0s") {
		t.Fatalf("the event does not give the class and a minute's backoff: %q", ev.Message)
	}
	p.Eventually(3*time.Second, func() bool {
		got, err := p.Admin.Job(context.Background(), j.ID)
		return err == nil && strings.Contains(got.Waiting, "slurm (quota): sbatch: error: QOSMaxSubmitJobPerUserLimit")
	}, "the queued job to show the engine's words")
}

// TestProviderKindsCheckSettings: a pool naming a provider the control
// plane does not know, or a setting its provider does not take, is refused
// with the field's path.
func TestProviderKindsCheckSettings(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48400})
	for _, tt := range []struct {
		provider  dspool.ProviderSpec
		wantField string
	}{
		{dspool.Provider("aws"), "pools[0].provider"},
		{dspool.ProviderSpec{Name: "local", Settings: map[string]json.RawMessage{"zone": []byte(`"a"`)}}, "pools[0].provider.zone"},
	} {
		_, err := p.Admin.ApplyPools(context.Background(), []*dspool.Pool{{Name: "x", Provider: tt.provider, Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}})
		var e *dspool.Error
		if !errors.As(err, &e) || e.Field != tt.wantField {
			t.Errorf("apply with provider %+v: %v, want an error naming %s", tt.provider, err, tt.wantField)
		}
	}
}

// TestListFailureIsAnEvent: an engine that cannot be listed is a
// provider_error, told once, not at every pass.
func TestListFailureIsAnEvent(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48500})
	prov := p.UseProvider()
	applyPool(t, p, &dspool.Pool{Name: "hpc", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &dspool.Autoscale{Max: 1}})
	prov.FailList(errors.New("slurm_load_jobs error: Unable to contact slurm controller"))
	p.Eventually(3*time.Second, func() bool {
		return findEvent(poolEvents(t, p, "hpc"), dspool.EventProviderError, "could not list the pool's nodes: slurm_load_jobs error") != nil
	}, "a provider_error event for the failed list")
	// Passes go on (one a second): still one event 2.5 s on.
	quiet := time.After(2500 * time.Millisecond)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		n := 0
		for _, e := range poolEvents(t, p, "hpc") {
			if e.Kind == dspool.EventProviderError {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d provider_error events over several passes, want 1", n)
		}
		select {
		case <-quiet:
			done = true
		case <-tick.C:
		}
	}
	prov.FailList(nil)
}

// joinRecorder is a provider that records what Grow is given and starts
// no machine.
type joinRecorder struct {
	mu    sync.Mutex
	reqs  []autoscale.GrowRequest
	names []string
}

func (r *joinRecorder) Grow(_ context.Context, req autoscale.GrowRequest) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	var names []string
	for range req.Joins {
		names = append(names, fmt.Sprintf("%s-j%d", req.Pool.Name, len(r.names)+1))
		r.names = append(r.names, names[len(names)-1])
	}
	return names, nil
}

func (r *joinRecorder) Remove(context.Context, *dspool.Pool, []string) error { return nil }

func (r *joinRecorder) List(_ context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []autoscale.Instance
	for _, n := range r.names {
		out = append(out, autoscale.Instance{Name: n, Created: time.Now(), State: autoscale.InstanceCreating})
	}
	return out, nil
}

// TestGrowGetsSingleUseJoins: each machine Grow asks for comes with a join
// token of its own, which joins one node, once, expires within the hour,
// and is not listed with the pool's tokens.
func TestGrowGetsSingleUseJoins(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 48600})
	ctx := context.Background()
	rec := &joinRecorder{}
	p.Server.UseProvider(dspool.ProviderLocal, rec)
	applyPool(t, p, &dspool.Pool{Name: "hpc", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Autoscale: &dspool.Autoscale{Max: 2}})
	for range 2 {
		submit(t, p.Admin, dspool.JobSpec{Pool: "hpc", CPUs: 1000, Memory: 64 << 20, Command: []string{"true"}})
	}
	var req autoscale.GrowRequest
	p.Eventually(3*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, r := range rec.reqs {
			n += r.N()
		}
		if n == 2 {
			req = rec.reqs[len(rec.reqs)-1]
		}
		return n == 2
	}, "two machines asked for")
	rec.mu.Lock()
	var joins []autoscale.Join
	for _, r := range rec.reqs {
		joins = append(joins, r.Joins...)
	}
	names := append([]string(nil), rec.names...)
	rec.mu.Unlock()
	if req.Pool == nil || req.Pool.Name != "hpc" {
		t.Fatalf("Grow was given pool %+v", req.Pool)
	}
	if joins[0].Token == "" || joins[0].Token == joins[1].Token {
		t.Fatalf("the two machines' tokens: %q and %q, want two of their own", joins[0].Token, joins[1].Token)
	}
	if d := time.Until(joins[0].Expires); d < 55*time.Minute || d > 61*time.Minute {
		t.Errorf("a machine's token expires in %s, want an hour", d)
	}
	cl := &api.Client{Server: p.URL}
	if _, err := cl.Register(ctx, api.RegisterRequest{JoinToken: joins[0].Token, Name: names[0]}); err != nil {
		t.Fatalf("the machine joins with its token: %v", err)
	}
	_, err := cl.Register(ctx, api.RegisterRequest{JoinToken: joins[0].Token, Name: "impostor"})
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "joins no other") {
		t.Errorf("a second join with the same token: %v, want unauthorized: it joined a node already", err)
	}
	if list, err := p.Admin.JoinTokens(ctx, "hpc"); err != nil || len(list.Tokens) != 0 {
		t.Errorf("the pool's listed join tokens: %+v %v, want none of the machines'", list, err)
	}
}
