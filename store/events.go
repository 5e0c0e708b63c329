package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/dspool/dspool"
)

// eventCounts caches how many events each pool has, so that keeping a pool
// to its newest MaxPoolEvents deletes the oldest by its index instead of
// counting them all on every append. Only AddPoolEvent writes events, under
// mu; a pool is counted once per process.
type eventCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// AddPoolEvent appends ev to its pool's events, setting its ID, and its time
// from the store's clock when it has none. A pool keeps its newest
// dspool.MaxPoolEvents events: older ones are deleted in the same
// transaction.
func (db *DB) AddPoolEvent(ctx context.Context, ev *dspool.PoolEvent) error {
	if ev.At.IsZero() {
		ev.At = db.now().UTC()
	}
	nodes := ""
	if len(ev.Nodes) > 0 {
		b, _ := json.Marshal(ev.Nodes)
		nodes = string(b)
	}
	db.events.mu.Lock()
	defer db.events.mu.Unlock()
	n, counted := db.events.n[ev.Pool]
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRow(`INSERT INTO pool_events (pool, at, kind, nodes, message) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			ev.Pool, unixNano(ev.At), ev.Kind, nodes, ev.Message).Scan(&ev.ID); err != nil {
			return err
		}
		n++
		if !counted {
			if err := tx.QueryRow(`SELECT count(*) FROM pool_events WHERE pool = ?`, ev.Pool).Scan(&n); err != nil {
				return err
			}
		}
		if over := n - dspool.MaxPoolEvents; over > 0 {
			if _, err := tx.Exec(`DELETE FROM pool_events WHERE id IN (
				SELECT id FROM pool_events WHERE pool = ? ORDER BY id LIMIT ?)`, ev.Pool, over); err != nil {
				return err
			}
			n = dspool.MaxPoolEvents
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add event to pool %s: %w", ev.Pool, err)
	}
	if db.events.n == nil {
		db.events.n = map[string]int{}
	}
	db.events.n[ev.Pool] = n
	return nil
}

// DefaultPoolEvents is how many events PoolEvents returns when given no
// limit.
const DefaultPoolEvents = 100

// PoolEvents returns the newest events of pool at or after since (every
// one kept when since is zero), at most limit of them (DefaultPoolEvents
// when 0; dspool.MaxPoolEvents at most), oldest first.
func (db *DB) PoolEvents(ctx context.Context, pool string, since time.Time, limit int) ([]*dspool.PoolEvent, error) {
	if limit <= 0 {
		limit = DefaultPoolEvents
	}
	return db.poolEvents(ctx, pool, since, 0, min(limit, dspool.MaxPoolEvents))
}

// poolEvents is PoolEvents of the events before the id before (0: all).
func (db *DB) poolEvents(ctx context.Context, pool string, since time.Time, before int64, limit int) ([]*dspool.PoolEvent, error) {
	from := int64(math.MinInt64)
	if !since.IsZero() {
		from = unixNano(since)
	}
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, pool, at, kind, nodes, message FROM (
		SELECT * FROM pool_events WHERE pool = ? AND at >= ? AND id < ? ORDER BY id DESC LIMIT ?) newest ORDER BY id`, pool, from, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list events of pool %s: %w", pool, err)
	}
	defer rows.Close()
	out := []*dspool.PoolEvent{}
	for rows.Next() {
		var ev dspool.PoolEvent
		var at int64
		var nodes string
		if err := rows.Scan(&ev.ID, &ev.Pool, &at, &ev.Kind, &nodes, &ev.Message); err != nil {
			return nil, err
		}
		ev.At = time.Unix(0, at).UTC()
		if nodes != "" {
			if err := json.Unmarshal([]byte(nodes), &ev.Nodes); err != nil {
				return nil, fmt.Errorf("event %d of pool %s: nodes: %w", ev.ID, pool, err)
			}
		}
		out = append(out, &ev)
	}
	return out, rows.Err()
}
