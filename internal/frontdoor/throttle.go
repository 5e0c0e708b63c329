package frontdoor

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// Throttle backs off repeated attempts per key (an address, a user name).
// Every attempt counts as a failure until it is forgiven, so that
// concurrent guesses cannot all pass before the first is counted. A key's
// count leaks away, one per Leak; past Free, each attempt closes the door
// for Base, doubling with every further attempt up to Max. Memory stays
// bounded: past MaxKeys, the key used least recently is forgotten.
//
// The zero value is usable with the defaults below.
type Throttle struct {
	Free    int           // attempts before any wait (default 5)
	Base    time.Duration // the first wait (default 1s)
	Max     time.Duration // the longest wait (default 5m)
	Leak    time.Duration // one attempt is forgotten per Leak (default 1m)
	MaxKeys int           // keys remembered (default 65536)
	Now     func() time.Time

	mu   sync.Mutex
	keys map[string]*list.Element
	lru  list.List // of *entry, most recently used at the front
}

type entry struct {
	key   string
	n     float64   // attempts counted, as of at
	at    time.Time // when n was last leaked
	until time.Time // no attempt before
}

// Attempt counts an attempt for key and returns 0, or refuses it (counting
// nothing) and returns how long until the next may be made.
func (t *Throttle) Attempt(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entry(key, now)
	if now.Before(e.until) {
		return e.until.Sub(now)
	}
	e.n++
	if over := int(math.Ceil(e.n)) - t.free(); over > 0 {
		e.until = now.Add(t.wait(over))
	}
	return 0
}

// Forgive takes back one attempt of key: one that succeeded, or that was
// not the caller's fault.
func (t *Throttle) Forgive(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el := t.keys[key]; el != nil {
		e := el.Value.(*entry)
		e.n = max(0, e.n-1)
	}
}

// Reset forgets key: its owner proved who they are.
func (t *Throttle) Reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el := t.keys[key]; el != nil {
		t.lru.Remove(el)
		delete(t.keys, key)
	}
}

// Len is the number of keys remembered.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

// entry returns key's entry, leaked to now and moved to the front, making
// one (and forgetting the least recently used past MaxKeys) if need be.
func (t *Throttle) entry(key string, now time.Time) *entry {
	if t.keys == nil {
		t.keys = map[string]*list.Element{}
	}
	if el := t.keys[key]; el != nil {
		t.lru.MoveToFront(el)
		e := el.Value.(*entry)
		if d := now.Sub(e.at); d > 0 {
			e.n = max(0, e.n-float64(d)/float64(t.leak()))
			e.at = now
		}
		return e
	}
	limit := t.MaxKeys
	if limit <= 0 {
		limit = 65536
	}
	for len(t.keys) >= limit {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.keys, old.Value.(*entry).key)
	}
	e := &entry{key: key, at: now}
	t.keys[key] = t.lru.PushFront(e)
	return e
}

func (t *Throttle) wait(over int) time.Duration {
	base, most := t.Base, t.Max
	if base <= 0 {
		base = time.Second
	}
	if most <= 0 {
		most = 5 * time.Minute
	}
	d := base
	for i := 1; i < over && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

func (t *Throttle) free() int {
	if t.Free <= 0 {
		return 5
	}
	return t.Free
}

func (t *Throttle) leak() time.Duration {
	if t.Leak <= 0 {
		return time.Minute
	}
	return t.Leak
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}
