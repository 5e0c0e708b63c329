// Package providertest is the conformance suite every autoscale.Provider
// passes: a provider's own test calls Run with a harness that makes a fresh
// provider and two pools of it.
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
}

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
		names, err := h.Provider.Grow(ctx, pool, n)
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
		names, err := h.Provider.Grow(ctx, h.Pool, 0)
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
				names, err := h.Provider.Grow(ctx, h.Pool, 1)
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
		_, err := h.Provider.Grow(ctx, h.Pool, 1)
		if !errors.Is(err, autoscale.ErrFixed) {
			t.Fatalf("Grow of a fixed provider: %v, want an error wrapping ErrFixed", err)
		}
		if !strings.Contains(err.Error(), h.Pool.Name) {
			t.Fatalf("the error does not name the pool: %v", err)
		}
	})
}
