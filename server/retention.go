package server

import (
	"context"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// Retention (docs/decisions/0022): every pruneEvery, what ended before its
// retention goes, a batch to a transaction. A batch is sized to hold the
// store's one writer for about pruneTarget: halved after one that took
// twice as long, doubled after one that took half. After each batch the
// pruner leaves the writer to everyone else for at least as long as the
// batch held it, so that submissions and heartbeats wait for one short
// batch at most, and a prune of any size takes at most half of the
// writer's time.

const (
	pruneEvery = time.Hour
	// pruneFirst is when the first prune runs after a start: not at once,
	// so that a start (and the agents' reconnection) has the writer to
	// itself.
	pruneFirst = time.Minute
	// pruneTarget is how long a batch should hold the writer.
	pruneTarget = 10 * time.Millisecond
	// Batches are of pruneMin to pruneMax rows of what is pruned (a job
	// goes with its attempts), starting at pruneStart.
	pruneMin, pruneStart, pruneMax = 20, 200, 2000
	// prunePause is the least pause between batches.
	prunePause = 10 * time.Millisecond
)

// batcher sizes batches by how long the last one took.
type batcher struct {
	size    int
	longest time.Duration // the longest a batch took
}

func newBatcher() *batcher { return &batcher{size: pruneStart} }

// took records that a batch took d, and sizes the next.
func (b *batcher) took(d time.Duration) {
	b.longest = max(b.longest, d)
	switch {
	case d > 2*pruneTarget:
		b.size = max(b.size/2, pruneMin)
	case d < pruneTarget/2:
		b.size = min(b.size*2, pruneMax)
	}
}

// Pruned is how many rows one prune removed, of each kind.
type Pruned struct {
	Jobs, Sessions, Events, Audit int
}

func (p Pruned) total() int { return p.Jobs + p.Sessions + p.Events + p.Audit }

func (s *Server) retentionLoop(ctx context.Context) {
	r := s.cfg.Retention
	if r.Jobs.Keeps() && r.Sessions.Keeps() && r.Events.Keeps() && r.Audit.Keeps() {
		return
	}
	first := time.NewTimer(pruneFirst)
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		_, _ = s.Prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune removes now what is older than the retention (Config.Retention):
// finished jobs with their attempts, ended sessions, pool events and audit
// entries (exported first when configured), a batch at a time. Run does it
// every hour; it stops between batches when ctx ends. Errors are logged,
// and the first is returned.
func (s *Server) Prune(ctx context.Context) (Pruned, error) {
	r := s.cfg.Retention
	now := s.cfg.Now()
	start := time.Now()
	var p Pruned
	var first error
	b := newBatcher()
	for _, k := range []struct {
		what  string
		age   dspool.Age
		into  *int
		prune func(context.Context, time.Time) (int, error)
	}{
		{"jobs", r.Jobs, &p.Jobs, b.all(s.db.PruneJobs)},
		{"sessions", r.Sessions, &p.Sessions, b.all(s.db.PruneSessions)},
		{"events", r.Events, &p.Events, b.all(s.db.PrunePoolEvents)},
		{"audit", r.Audit, &p.Audit, func(ctx context.Context, before time.Time) (int, error) { return s.pruneAudit(ctx, before, b) }},
	} {
		if k.age.Keeps() || ctx.Err() != nil {
			continue
		}
		before := now.Add(-time.Duration(k.age))
		n, err := k.prune(ctx, before)
		*k.into = n
		if err != nil && ctx.Err() == nil {
			s.log.Error("retention: prune", "what", k.what, "before", before, "pruned", n, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	if p.total() > 0 {
		s.log.Info("retention: pruned what ended before its retention", "jobs", p.Jobs, "sessions", p.Sessions, "events", p.Events,
			"audit", p.Audit, "took", time.Since(start).Round(time.Millisecond), "longest_batch", b.longest.Round(time.Microsecond))
	}
	return p, first
}

// all makes a prune of everything before a time from a prune of one
// batch.
func (b *batcher) all(batch func(context.Context, time.Time, int) (int, error)) func(context.Context, time.Time) (int, error) {
	return func(ctx context.Context, before time.Time) (int, error) {
		total := 0
		for {
			began, size := time.Now(), b.size
			n, err := batch(ctx, before, size)
			took := time.Since(began)
			b.took(took)
			total += n
			if err != nil || n < size {
				return total, err
			}
			if err := pause(ctx, took); err != nil {
				return total, err
			}
		}
	}
}

// pause waits for as long as a batch took, and at least prunePause.
func pause(ctx context.Context, took time.Duration) error {
	t := time.NewTimer(max(took, prunePause))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pruneAudit removes the audit entries from before before, oldest first,
// appending each batch to the export file (when configured) before it
// goes; a prune of any entry is itself audited.
func (s *Server) pruneAudit(ctx context.Context, before time.Time, b *batcher) (int, error) {
	file := s.cfg.Retention.AuditExport
	total := 0
	defer func() {
		if total == 0 {
			return
		}
		detail := fmt.Sprintf("%d entries from before %s", total, before.UTC().Format(time.RFC3339))
		if file != "" {
			detail += ", exported to " + file
		}
		s.Audit(context.WithoutCancel(ctx), dspool.AuditEntry{Actor: dspool.AuditSystem, Action: dspool.AuditAuditPrune,
			Target: "audit", Outcome: dspool.AuditSuccess, Detail: detail})
	}()
	for {
		size := b.size
		es, err := s.db.OldAudit(ctx, before, size)
		if err != nil || len(es) == 0 {
			return total, err
		}
		if file != "" {
			if err := exportAudit(file, es); err != nil {
				return total, err
			}
		}
		ids := make([]int64, len(es))
		for i, e := range es {
			ids[i] = e.ID
		}
		began := time.Now()
		n, err := s.db.PruneAudit(ctx, before, ids)
		took := time.Since(began)
		b.took(took)
		total += n
		if err != nil || len(es) < size {
			return total, err
		}
		if err := pause(ctx, took); err != nil {
			return total, err
		}
	}
}
