// Package providertest is the conformance suite every autoscale.Provider
// passes: a provider's own test calls Run with a harness that makes a fresh
// provider and two pools of it. Besides growing, listing and removing, it
// checks what a provider's engine adds: that each machine gets its own join
// token and never on its command line, that a refusal is an
// *autoscale.Error with a class and the engine's words, that a queued
// machine says what it waits for, and that the provider's list policy
// keeps the engine from being listed at every pass.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// Harness is one fresh provider under test.
type Harness struct {
	Provider autoscale.Provider
	// Pool and Other are two pools of this provider.
	Pool, Other *dspool.Pool
	// Fixed providers never grow a pool (Grow wraps autoscale.ErrFixed);
	// Join then makes a node of pool join by itself, as a machine would.
	Fixed bool
	Join  func(t *testing.T, pool *dspool.Pool, name string)

	// Started, when set, returns what the machine called name was
	// started with: its command line and the join token it was given (by
	// whatever means: environment, file). Nil for providers that join
	// their machines by other means (local's agents use the pool's own
	// token, to be restarted).
	Started func(t *testing.T, name string) (args []string, token string)
	// Refused, when set, is a pool of this provider that its engine
	// refuses to grow (a partition that does not exist), and RefusedClass
	// the class the refusal must have.
	Refused      *dspool.Pool
	RefusedClass autoscale.Class
	// Queued, when set, is a pool whose new machines wait in the engine's
	// queue: listed as creating, with what they wait for.
	Queued *dspool.Pool
	// List is the provider's list policy (its Kind's); zero: none, the
	// provider is listed at every pass.
	List autoscale.ListPolicy
}

// Request returns a request for n machines of pool, each with its own
// join token.
func Request(pool *dspool.Pool, n int) autoscale.GrowRequest {
	req := autoscale.GrowRequest{Pool: pool}
	for i := 0; i < n; i++ {
		req.Joins = append(req.Joins, autoscale.Join{Server: "https://127.0.0.1:1", CAPin: "sha256:00",
			Token: fmt.Sprintf("dspj_conformance%d_%d.00", tokens.Add(1), i), Expires: time.Now().Add(time.Hour)})
	}
	return req
}

var tokens atomic.Int64

// joined numbers the machines that joined fixed pools.
var joined atomic.Int64

// nodeName is what an agent may register as.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Run runs the suite; newHarness is called once per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	ctx := context.Background()
	grow := func(t *testing.T, h *Harness, pool *dspool.Pool, n int) []string {
		t.Helper()
		if h.Fixed {
			var names []string
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("%s-m%d", pool.Name, joined.Add(1))
				h.Join(t, pool, name)
				names = append(names, name)
			}
			return names
		}
		names, err := h.Provider.Grow(ctx, Request(pool, n))
		if err != nil {
			t.Fatalf("Grow(%s, %d): %v", pool.Name, n, err)
		}
		if len(names) != n {
			t.Fatalf("Grow(%s, %d) gave %d names: %v", pool.Name, n, len(names), names)
		}
		return names
	}
	list := func(t *testing.T, h *Harness, pool *dspool.Pool) []string {
		t.Helper()
		inst, err := h.Provider.List(ctx, pool)
		if err != nil {
			t.Fatalf("List(%s): %v", pool.Name, err)
		}
		var names []string
		for _, in := range inst {
			if in.Created.IsZero() || in.Created.After(time.Now().Add(time.Second)) {
				t.Errorf("List(%s): instance %s was created at %v", pool.Name, in.Name, in.Created)
			}
			names = append(names, in.Name)
		}
		slices.Sort(names)
		return names
	}
	same := func(t *testing.T, what string, got, want []string) {
		t.Helper()
		got, want = slices.Clone(got), slices.Clone(want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}

	t.Run("starts empty", func(t *testing.T) {
		h := newHarness(t)
		if got := list(t, h, h.Pool); len(got) != 0 {
			t.Fatalf("a new provider lists %v", got)
		}
	})
	t.Run("grow by zero does nothing", func(t *testing.T) {
		h := newHarness(t)
		names, err := h.Provider.Grow(ctx, Request(h.Pool, 0))
		if err != nil || len(names) != 0 {
			t.Fatalf("Grow(0) = %v, %v", names, err)
		}
		if got := list(t, h, h.Pool); len(got) != 0 {
			t.Fatalf("after Grow(0) List gives %v", got)
		}
	})
	t.Run("grow gives distinct valid names that list shows", func(t *testing.T) {
		h := newHarness(t)
		a := grow(t, h, h.Pool, 2)
		b := grow(t, h, h.Pool, 1)
		all := append(slices.Clone(a), b...)
		for _, n := range all {
			if !nodeName.MatchString(n) {
				t.Errorf("name %q is not a valid node name", n)
			}
		}
		if len(slices.Compact(slices.Sorted(slices.Values(all)))) != 3 {
			t.Fatalf("names are not distinct: %v", all)
		}
		same(t, "List after growing by 2 then 1", list(t, h, h.Pool), all)
	})
	t.Run("pools are apart", func(t *testing.T) {
		h := newHarness(t)
		mine := grow(t, h, h.Pool, 1)
		theirs := grow(t, h, h.Other, 1)
		same(t, "List(pool)", list(t, h, h.Pool), mine)
		same(t, "List(other)", list(t, h, h.Other), theirs)
		// Removing another pool's node through this pool removes nothing.
		if err := h.Provider.Remove(ctx, h.Pool, theirs); err != nil {
			t.Fatalf("Remove of another pool's node: %v", err)
		}
		same(t, "List(other) after a remove through pool", list(t, h, h.Other), theirs)
	})
	t.Run("remove takes a node out and is idempotent", func(t *testing.T) {
		h := newHarness(t)
		names := grow(t, h, h.Pool, 3)
		if err := h.Provider.Remove(ctx, h.Pool, names[:1]); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if !h.Fixed {
			same(t, "List after removing one", list(t, h, h.Pool), names[1:])
		}
		if err := h.Provider.Remove(ctx, h.Pool, names[:1]); err != nil {
			t.Fatalf("Remove again: %v", err)
		}
		if err := h.Provider.Remove(ctx, h.Pool, []string{"no-such-node"}); err != nil {
			t.Fatalf("Remove of a node that is not there: %v", err)
		}
		if err := h.Provider.Remove(ctx, h.Pool, nil); err != nil {
			t.Fatalf("Remove of nothing: %v", err)
		}
	})
	t.Run("grow after remove", func(t *testing.T) {
		h := newHarness(t)
		if h.Fixed {
			t.Skip("a fixed provider does not grow")
		}
		names := grow(t, h, h.Pool, 2)
		if err := h.Provider.Remove(ctx, h.Pool, names); err != nil {
			t.Fatal(err)
		}
		again := grow(t, h, h.Pool, 2)
		same(t, "List after remove and grow", list(t, h, h.Pool), again)
	})
	t.Run("concurrent grows give distinct names", func(t *testing.T) {
		h := newHarness(t)
		if h.Fixed {
			t.Skip("a fixed provider does not grow")
		}
		var mu sync.Mutex
		var all []string
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				names, err := h.Provider.Grow(ctx, Request(h.Pool, 1))
				if err != nil {
					t.Errorf("Grow: %v", err)
				}
				mu.Lock()
				all = append(all, names...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(slices.Compact(slices.Sorted(slices.Values(all)))) != 4 {
			t.Fatalf("4 concurrent grows gave %v", all)
		}
		same(t, "List after concurrent grows", list(t, h, h.Pool), all)
	})
	t.Run("fixed providers refuse to grow with a reason", func(t *testing.T) {
		h := newHarness(t)
		if !h.Fixed {
			t.Skip("the provider grows")
		}
		_, err := h.Provider.Grow(ctx, Request(h.Pool, 1))
		if !errors.Is(err, autoscale.ErrFixed) {
			t.Fatalf("Grow of a fixed provider: %v, want an error wrapping ErrFixed", err)
		}
		if !strings.Contains(err.Error(), h.Pool.Name) {
			t.Fatalf("the error does not name the pool: %v", err)
		}
	})
	t.Run("each machine gets its own join token, never on its command line", func(t *testing.T) {
		h := newHarness(t)
		if h.Started == nil || h.Fixed {
			t.Skip("the provider's machines join by other means")
		}
		req := Request(h.Pool, 2)
		names, err := h.Provider.Grow(ctx, req)
		if err != nil || len(names) != 2 {
			t.Fatalf("Grow(2) = %v, %v", names, err)
		}
		given := map[string]bool{req.Joins[0].Token: true, req.Joins[1].Token: true}
		got := map[string]bool{}
		for _, name := range names {
			args, token := h.Started(t, name)
			if !given[token] {
				t.Errorf("machine %s got join token %q, not one of the request's", name, token)
			}
			got[token] = true
			for _, a := range args {
				secret, _, _ := strings.Cut(token, ".")
				if secret != "" && strings.Contains(a, secret) {
					t.Errorf("machine %s has its join token on its command line: %q", name, a)
				}
			}
		}
		if len(got) != 2 {
			t.Errorf("two machines got %d distinct tokens", len(got))
		}
	})
	t.Run("a refusal is a classed error in the engine's words", func(t *testing.T) {
		h := newHarness(t)
		if h.Refused == nil {
			t.Skip("the harness has no pool its engine refuses")
		}
		names, err := h.Provider.Grow(ctx, Request(h.Refused, 1))
		var e *autoscale.Error
		if !errors.As(err, &e) {
			t.Fatalf("Grow of a refused pool = %v, %v: want an *autoscale.Error", names, err)
		}
		if e.Class != h.RefusedClass || e.Message == "" || e.Engine == "" {
			t.Errorf("refusal: class %q engine %q message %q; want class %q and the engine's words", e.Class, e.Engine, e.Message, h.RefusedClass)
		}
		if got := list(t, h, h.Refused); len(got) != len(names) {
			t.Errorf("after a refusal List gives %v, Grow gave %v", got, names)
		}
	})
	t.Run("a queued machine says what it waits for", func(t *testing.T) {
		h := newHarness(t)
		if h.Queued == nil {
			t.Skip("the harness has no pool whose machines queue")
		}
		names := grow(t, h, h.Queued, 1)
		// An engine may tell why a machine waits a moment after it took
		// it (a Kubernetes scheduler marks a pod unschedulable once it
		// tried to place it): a few seconds' grace.
		deadline := time.Now().Add(10 * time.Second)
		for {
			inst, err := h.Provider.List(ctx, h.Queued)
			if err != nil || len(inst) != 1 || inst[0].Name != names[0] {
				t.Fatalf("List after growing a queued pool = %+v, %v", inst, err)
			}
			in := inst[0]
			if in.State == autoscale.InstanceCreating && in.Err != nil && in.Err.Message != "" && in.Err.Class != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a queued machine lists as %+v (err %v): want creating, with what it waits for", in, in.Err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("the list policy bounds how often the engine is listed", func(t *testing.T) {
		h := newHarness(t)
		if h.List.Every == 0 {
			t.Skip("the provider is listed at every pass (its list is in memory)")
		}
		clock := time.Now()
		var mu sync.Mutex
		now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
		cnt := &counting{Provider: h.Provider}
		c := autoscale.NewCache(cnt, h.List, now)
		for i := 0; i < 100; i++ { // 100 passes at once
			if _, err := c.List(ctx, h.Pool); err != nil {
				t.Fatal(err)
			}
		}
		if got := cnt.lists.Load(); got != 1 {
			t.Fatalf("100 passes listed the engine %d times, want 1", got)
		}
		advance(h.List.Every + time.Millisecond)
		if _, err := c.List(ctx, h.Pool); err != nil {
			t.Fatal(err)
		}
		if got := cnt.lists.Load(); got != 2 {
			t.Fatalf("a pass after the policy's Every listed the engine %d times in all, want 2", got)
		}
		names, err := c.Grow(ctx, Request(h.Pool, 1))
		if err != nil {
			t.Fatal(err)
		}
		inst, _ := c.List(ctx, h.Pool)
		if len(inst) != 1 || inst[0].Name != names[0] {
			t.Fatalf("right after Grow the cached list is %+v, want %v", inst, names)
		}
		if got := cnt.lists.Load(); got != 2 {
			t.Fatalf("a pass right after Grow listed the engine (%d lists in all, want 2)", got)
		}
	})
}

// counting counts a provider's lists.
type counting struct {
	autoscale.Provider
	lists atomic.Int64
}

func (c *counting) List(ctx context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	c.lists.Add(1)
	return c.Provider.List(ctx, pool)
}
