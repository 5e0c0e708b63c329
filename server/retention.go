package server

import (
	"context"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// Retention (docs/decisions/0021): every pruneEvery, what ended before its
// retention goes, pruneBatch rows to a transaction. After each batch the
// pruner leaves the store's one writer to everyone else for at least as
// long as the batch held it, so that submissions and heartbeats wait for
// one short batch at most, and a prune of any size takes at most half of
// the writer's time.

const (
	pruneEvery = time.Hour
	// pruneFirst is when the first prune runs after a start: not at once,
	// so that a start (and the agents' reconnection) has the writer to
	// itself.
	pruneFirst = time.Minute
	pruneBatch = 500
	// prunePause is the least pause between batches.
	prunePause = 10 * time.Millisecond
)

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
	for _, k := range []struct {
		what  string
		age   dspool.Age
		into  *int
		prune func(context.Context, time.Time) (int, error)
	}{
		{"jobs", r.Jobs, &p.Jobs, s.pruneBatches(s.db.PruneJobs)},
		{"sessions", r.Sessions, &p.Sessions, s.pruneBatches(s.db.PruneSessions)},
		{"events", r.Events, &p.Events, s.pruneBatches(s.db.PrunePoolEvents)},
		{"audit", r.Audit, &p.Audit, s.pruneAudit},
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
			"audit", p.Audit, "took", time.Since(start).Round(time.Millisecond))
	}
	return p, first
}

// pruneBatches makes a prune of everything before a time from a prune of
// one batch.
func (s *Server) pruneBatches(batch func(context.Context, time.Time, int) (int, error)) func(context.Context, time.Time) (int, error) {
	return func(ctx context.Context, before time.Time) (int, error) {
		total := 0
		for {
			began := time.Now()
			n, err := batch(ctx, before, pruneBatch)
			total += n
			if err != nil || n < pruneBatch {
				return total, err
			}
			if err := pause(ctx, began); err != nil {
				return total, err
			}
		}
	}
}

// pause waits for as long as the batch that began at began took, and at
// least prunePause.
func pause(ctx context.Context, began time.Time) error {
	t := time.NewTimer(max(time.Since(began), prunePause))
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
func (s *Server) pruneAudit(ctx context.Context, before time.Time) (int, error) {
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
		began := time.Now()
		es, err := s.db.OldAudit(ctx, before, pruneBatch)
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
		n, err := s.db.PruneAudit(ctx, before, ids)
		total += n
		if err != nil || len(es) < pruneBatch {
			return total, err
		}
		if err := pause(ctx, began); err != nil {
			return total, err
		}
	}
}
