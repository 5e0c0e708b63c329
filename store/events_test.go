package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

// clock is a fake store clock that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time               { return c.t }
func (c *clock) advance(d time.Duration)      { c.t = c.t.Add(d) }
func newClock() *clock                        { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func openAt(t *testing.T, c *clock) *store.DB { return openWith(t, store.Options{Now: c.now}) }

func openWith(t *testing.T, opts store.Options) *store.DB {
	t.Helper()
	db, err := store.OpenAt(t, filepath.Join(t.TempDir(), "s.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPoolEventsAppendAndList(t *testing.T) {
	c := newClock()
	db := openAt(t, c)
	ctx := context.Background()
	start := c.t
	for i := range 5 {
		ev := &dspool.PoolEvent{Pool: "gpu", Kind: dspool.EventScaleOut, Nodes: []string{fmt.Sprintf("gpu-%d", i)}, Message: fmt.Sprint("event ", i)}
		if err := db.AddPoolEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID == 0 || !ev.At.Equal(c.t) {
			t.Errorf("event %d: id %d at %v, want an id and the store's clock %v", i, ev.ID, ev.At, c.t)
		}
		c.advance(time.Minute)
	}
	at := start.Add(-time.Hour)
	if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: "cpu", At: at, Kind: dspool.EventWaiting, Message: "other pool"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		pool  string
		since time.Time
		limit int
		want  []string // messages, oldest first
	}{
		{"all", "gpu", time.Time{}, 0, []string{"event 0", "event 1", "event 2", "event 3", "event 4"}},
		{"limit keeps the newest", "gpu", time.Time{}, 2, []string{"event 3", "event 4"}},
		{"since", "gpu", start.Add(3 * time.Minute), 0, []string{"event 3", "event 4"}},
		{"since and limit", "gpu", start.Add(time.Minute), 1, []string{"event 4"}},
		{"other pool, given time kept", "cpu", at, 0, []string{"other pool"}},
		{"no events", "none", time.Time{}, 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := db.PoolEvents(ctx, tt.pool, tt.since, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, ev := range evs {
				got = append(got, ev.Message)
				if ev.Pool != tt.pool {
					t.Errorf("event %d is of pool %s, want %s", ev.ID, ev.Pool, tt.pool)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	evs, _ := db.PoolEvents(ctx, "gpu", time.Time{}, 1)
	if len(evs) != 1 || len(evs[0].Nodes) != 1 || evs[0].Nodes[0] != "gpu-4" || evs[0].Kind != dspool.EventScaleOut || !evs[0].At.Equal(start.Add(4*time.Minute)) {
		t.Errorf("newest event: got %+v, want kind scale_out, nodes [gpu-4] at %v", evs[0], start.Add(4*time.Minute))
	}
	evs, _ = db.PoolEvents(ctx, "cpu", time.Time{}, 0)
	if len(evs) != 1 || evs[0].Nodes != nil || !evs[0].At.Equal(at) {
		t.Errorf("event without nodes: got %+v, want no nodes at %v", evs[0], at)
	}
}

func TestPoolEventsArePruned(t *testing.T) {
	if testing.Short() {
		t.Skip("adds over 10,000 events")
	}
	c := newClock()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.OpenAt(t, path, store.Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	add := func(db *store.DB, pool string, msg any) {
		t.Helper()
		if err := db.AddPoolEvent(ctx, &dspool.PoolEvent{Pool: pool, Kind: dspool.EventPolicy, Message: fmt.Sprint(msg)}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(db *store.DB, first, last int) {
		t.Helper()
		evs, err := db.PoolEvents(ctx, "big", time.Time{}, dspool.MaxPoolEvents+100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != dspool.MaxPoolEvents {
			t.Fatalf("got %d events kept, want %d", len(evs), dspool.MaxPoolEvents)
		}
		if f, l := evs[0].Message, evs[len(evs)-1].Message; f != fmt.Sprint(first) || l != fmt.Sprint(last) {
			t.Errorf("kept events %s..%s, want %d..%d", f, l, first, last)
		}
	}
	extra := 25
	for i := range dspool.MaxPoolEvents + extra {
		add(db, "big", i)
		if i == 0 {
			add(db, "small", "kept") // another pool's events count apart
		}
	}
	check(db, extra, dspool.MaxPoolEvents+extra-1)
	if small, _ := db.PoolEvents(ctx, "small", time.Time{}, 0); len(small) != 1 {
		t.Errorf("the other pool has %d events, want its 1", len(small))
	}
	db.Close()

	// Reopened, the store still keeps the pool to its newest events.
	db = open(t, path)
	add(db, "big", "after reopening")
	evs, _ := db.PoolEvents(ctx, "big", time.Time{}, dspool.MaxPoolEvents+100)
	if len(evs) != dspool.MaxPoolEvents || evs[0].Message != fmt.Sprint(extra+1) || evs[len(evs)-1].Message != "after reopening" {
		t.Errorf("after reopening: %d events from %s to %s, want %d from %d to the new one",
			len(evs), evs[0].Message, evs[len(evs)-1].Message, dspool.MaxPoolEvents, extra+1)
	}
}
