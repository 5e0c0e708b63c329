package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/frontdoor"
)

// Refused logins are aggregated in the audit log: the first refusal of a
// login (web or SSH) for one user from one address, for one reason, is
// written at once; the same ones that follow within failureWindow are
// counted, and one entry at the window's end says how many there were. A
// guessing attack then writes two entries per user and address a minute,
// not one per guess; a refusal for another reason is written apart.
const (
	failureWindow = time.Minute
	// maxFailureWindows bounds the windows kept open (an attack from many
	// addresses); past it, every open window is closed and summed up.
	maxFailureWindows = 10000
)

// loginFailures are the open windows of refused logins.
type loginFailures struct {
	mu    sync.Mutex
	open  map[string]*failures
	order []*failures // by start: windows end in this order
}

type failures struct {
	key   string
	first dspool.AuditEntry
	more  int // refusals after the first
}

// aggregated reports whether e is a refused login, which add takes.
func aggregated(e dspool.AuditEntry) bool {
	return e.Outcome == dspool.AuditFailure && (e.Action == dspool.AuditLoginWeb || e.Action == dspool.AuditLoginSSH)
}

// add takes a refused login e. It reports whether e opens a window (write
// it), and returns the summaries of the windows that ended by e.At.
func (f *loginFailures) add(e dspool.AuditEntry) (write bool, due []dspool.AuditEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	due = f.expire(e.At, false)
	key := e.Action + "\x00" + e.Target + "\x00" + frontdoor.SourceOf(e.Remote) + "\x00" + e.Detail
	if w := f.open[key]; w != nil {
		w.more++
		return false, due
	}
	if len(f.open) >= maxFailureWindows {
		due = append(due, f.expire(e.At, true)...)
	}
	if f.open == nil {
		f.open = map[string]*failures{}
	}
	w := &failures{key: key, first: e}
	f.open[key] = w
	f.order = append(f.order, w)
	return true, due
}

// expire closes the windows that ended by now (all of them when all) and
// returns the summaries of those that counted more refusals.
func (f *loginFailures) expire(now time.Time, all bool) []dspool.AuditEntry {
	var due []dspool.AuditEntry
	i := 0
	for ; i < len(f.order); i++ {
		w := f.order[i]
		if !all && now.Sub(w.first.At) < failureWindow {
			break
		}
		delete(f.open, w.key)
		if w.more > 0 {
			due = append(due, dspool.AuditEntry{At: now, Actor: dspool.AuditAnonymous, Action: w.first.Action,
				Target: w.first.Target, Remote: frontdoor.SourceOf(w.first.Remote), Outcome: dspool.AuditFailure,
				Detail: fmt.Sprintf("%d more refused since %s: %s", w.more, w.first.At.UTC().Format(time.RFC3339), w.first.Detail)})
		}
	}
	f.order = append(f.order[:0:0], f.order[i:]...)
	return due
}

// flushFailures writes the summaries of the windows that ended by now, or
// of all when all (the control plane stops).
func (s *Server) flushFailures(ctx context.Context, all bool) {
	s.failures.mu.Lock()
	due := s.failures.expire(s.cfg.Now(), all)
	s.failures.mu.Unlock()
	for _, e := range due {
		s.writeAudit(ctx, e)
	}
}

// failureLoop sums up the windows of refused logins as they end.
func (s *Server) failureLoop(ctx context.Context) {
	t := time.NewTicker(failureWindow / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushFailures(context.WithoutCancel(ctx), true)
			return
		case <-t.C:
			s.flushFailures(ctx, false)
		}
	}
}
