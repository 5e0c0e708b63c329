package autoscale

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
)

// ListPolicy bounds how often a provider's engine is listed. The
// autoscaler passes every second and at every change; a cloud API or a
// Slurm controller would throttle a List at each pass, so Cache answers
// most passes from what it read last.
type ListPolicy struct {
	// Every is how long a pool's list is kept while nothing changes.
	// Zero: no cache, List at every pass (providers whose list is in
	// memory: local, static).
	Every time.Duration
	// Changing is how long it is kept while an instance is being created,
	// and after a Grow or Remove (default Every/6, at least MinGap).
	Changing time.Duration
	// MinGap is the least time between two lists of one pool, whatever
	// happens: the engine's limit (default 1s). A failed list backs off
	// from it, doubling up to Every.
	MinGap time.Duration
}

func (p ListPolicy) withDefaults() ListPolicy {
	if p.MinGap <= 0 {
		p.MinGap = time.Second
	}
	if p.Changing <= 0 {
		p.Changing = p.Every / 6
	}
	p.Changing = max(p.Changing, p.MinGap)
	p.Every = max(p.Every, p.Changing)
	return p
}

// Cache is a Provider that lists its provider's engine only as often as
// the policy allows: the one place where lists are cached. What Grow and
// Remove do through it shows in its next answer at once, and a provider
// that watches its engine calls Changed to have a pool read again sooner.
type Cache struct {
	prov Provider
	pol  ListPolicy
	now  func() time.Time

	mu    sync.Mutex
	pools map[string]*cachedPool
}

type cachedPool struct {
	read     sync.Mutex // one List of a pool at a time
	known    bool
	insts    []Instance
	at, next time.Time // last read; next read due
	failures int
}

var _ Provider = (*Cache)(nil)

// NewCache wraps prov. now is the clock (nil: time.Now).
func NewCache(prov Provider, pol ListPolicy, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{prov: prov, pol: pol.withDefaults(), now: now, pools: map[string]*cachedPool{}}
}

// Provider returns the wrapped provider.
func (c *Cache) Provider() Provider { return c.prov }

func (c *Cache) pool(name string) *cachedPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.pools[name]
	if cp == nil {
		cp = &cachedPool{}
		c.pools[name] = cp
	}
	return cp
}

// soon makes the pool's next read due within d (never before MinGap
// after the last). c.mu is held.
func (c *Cache) soon(cp *cachedPool, d time.Duration) {
	due := c.now().Add(d)
	if gap := cp.at.Add(c.pol.MinGap); due.Before(gap) {
		due = gap
	}
	if due.Before(cp.next) {
		cp.next = due
	}
}

// Changed says that the engine reported a change in pool: it is read again
// at the next List that MinGap allows.
func (c *Cache) Changed(pool string) {
	cp := c.pool(pool)
	c.mu.Lock()
	c.soon(cp, 0)
	c.mu.Unlock()
}

// List answers from the last read while it is fresh; otherwise it reads
// the engine. A failed read returns the error with the last list, which
// the caller may still use (nil when there was none).
func (c *Cache) List(ctx context.Context, pool *dspool.Pool) ([]Instance, error) {
	cp := c.pool(pool.Name)
	cp.read.Lock()
	defer cp.read.Unlock()
	c.mu.Lock()
	if cp.known && c.now().Before(cp.next) {
		out := slices.Clone(cp.insts)
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	insts, err := c.prov.List(ctx, pool)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	cp.at = now
	if err != nil {
		cp.failures++
		cp.next = now.Add(min(c.pol.MinGap<<min(cp.failures, 16), c.pol.Every))
		if !cp.known {
			return nil, err
		}
		return slices.Clone(cp.insts), err
	}
	cp.failures = 0
	cp.known, cp.insts = true, slices.Clone(insts)
	keep := c.pol.Every
	for _, in := range insts {
		if in.State == InstanceCreating {
			keep = c.pol.Changing
			break
		}
	}
	cp.next = now.Add(keep)
	return insts, nil
}

// Grow grows through the provider and adds what it asked for to the list.
func (c *Cache) Grow(ctx context.Context, req GrowRequest) ([]string, error) {
	names, err := c.prov.Grow(ctx, req)
	cp := c.pool(req.Pool.Name)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, n := range names {
		cp.insts = append(cp.insts, Instance{Name: n, Created: now, State: InstanceCreating})
	}
	if len(names) > 0 {
		c.soon(cp, c.pol.Changing)
	}
	return names, err
}

// Remove removes through the provider and takes the names off the list.
func (c *Cache) Remove(ctx context.Context, pool *dspool.Pool, names []string) error {
	err := c.prov.Remove(ctx, pool, names)
	cp := c.pool(pool.Name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		cp.insts = slices.DeleteFunc(cp.insts, func(in Instance) bool { return slices.Contains(names, in.Name) })
	}
	c.soon(cp, c.pol.Changing)
	return err
}

// Make makes the provider of kind name through its kind's New, wrapped in
// a Cache unless its list policy asks for none; env.Changed is wired to the
// cache.
func (r *Registry) Make(name string, env Env) (Provider, error) {
	k := r.kinds[name]
	if k == nil || k.New == nil {
		return nil, nil
	}
	var cache atomic.Pointer[Cache]
	env.Changed = func(pool string) {
		if c := cache.Load(); c != nil {
			c.Changed(pool)
		}
	}
	prov, err := k.New(env)
	if err != nil || k.List.Every == 0 {
		return prov, err
	}
	c := NewCache(prov, k.List, env.Now)
	cache.Store(c)
	return c, nil
}
