package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/cron"
	"github.com/dspool/dspool/store"
)

// The loop that fires schedules. The store is the truth about each one's
// next slot; the loop sleeps until the earliest (or a second, whichever
// comes first, so a clock that moves is followed), fires what is due and
// sleeps again. A slot fires once: its record and its job are one fenced
// transaction (store.FireSchedule), so a control plane killed at any
// point, restarted, fires it on start if it had not, and never twice. A
// control plane down across several slots runs the latest alone, once
// (as a Kubernetes CronJob does), and says so on the schedule.

// recurringMaxWait is the longest the loop sleeps between passes.
const recurringMaxWait = time.Second

// wakeRecurring makes the loop look at the schedules now: one was created
// or resumed, and may fire before the slot the loop sleeps for.
func (s *Server) wakeRecurring() {
	select {
	case s.recurWake <- struct{}{}:
	default:
	}
}

func (s *Server) recurringLoop(ctx context.Context) {
	for {
		next, err := s.FireSchedules(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("fire schedules", "err", err)
		}
		wait := recurringMaxWait
		if next != nil {
			wait = min(wait, max(next.Sub(s.cfg.Now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.recurWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// recurringParallel is how many schedules due at once are fired at once:
// their jobs are committed together (the store's group commit), so that a
// thousand nightly jobs at 02:00 are not a thousand writes in a row.
const recurringParallel = 64

// FireSchedules fires every schedule whose slot is due by the clock
// (Config.Now), and returns the earliest next slot of any schedule (nil:
// none). A schedule that fails to fire (the store is unavailable) stays
// due and fires at the next pass; the first such error is returned after
// the others have been fired.
func (s *Server) FireSchedules(ctx context.Context) (*time.Time, error) {
	now := s.cfg.Now()
	due, err := s.db.DueSchedules(ctx, now)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	sem := make(chan struct{}, recurringParallel)
	for _, sc := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.fire(ctx, sc, now); err != nil {
				s.log.Warn("fire schedule", "schedule", sc.ID, "user", sc.User, "name", sc.Name, "err", err)
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	next, err := s.db.NextSlot(ctx)
	return next, cmp.Or(first, err)
}

// fire fires the due slot of sc at now: a job, unless the overlap policy
// or the starting deadline says none, or the job is refused (its owner
// lost access to the pool, was disabled, ...); the reason for none is the
// schedule's message. Errors returned are those worth another try.
func (s *Server) fire(ctx context.Context, sc *dspool.Schedule, now time.Time) error {
	expect := *sc.NextSlot
	c, err := cron.Parse(sc.Cron, sc.Location())
	if err != nil {
		// It parsed at creation; a version of dspool that reads it
		// otherwise stops it, saying why, rather than fail each pass.
		return s.noRun(ctx, store.Firing{Schedule: sc.ID, Expect: expect, Slot: expect},
			fmt.Sprintf("stopped: its cron expression no longer reads: %s; delete it and create it again", dspool.Message(err)))
	}
	slot, following, ok := c.Due(expect, now)
	if !ok {
		return nil
	}
	f := store.Firing{Schedule: sc.ID, Expect: expect, Slot: slot, Following: following}
	at := slot.In(sc.Location()).Format(time.DateTime + " MST")
	missed := ""
	if slot.After(expect) {
		missed = fmt.Sprintf("the slots from %s until this one were missed (the control plane was down or late) and did not run; ",
			expect.In(sc.Location()).Format(time.DateTime+" MST"))
	}
	f.Message = strings.TrimSuffix(missed, "; ")
	if late := now.Sub(slot); sc.StartingDeadline > 0 && late > time.Duration(sc.StartingDeadline) {
		return s.noRun(ctx, f, fmt.Sprintf("%sslot %s not run: it came %s late, past its starting deadline of %s",
			missed, at, late.Round(time.Second), time.Duration(sc.StartingDeadline)))
	}
	u, err := s.db.User(ctx, sc.User)
	if err != nil {
		return err
	}
	if u.Disabled {
		return s.noRun(ctx, f, fmt.Sprintf("%sslot %s not run: its owner %s is disabled", missed, at, u.Name))
	}
	spec := sc.Job
	spec.Env = maps.Clone(spec.Env)
	spec.Command = slices.Clone(spec.Command)
	spec.Secrets = slices.Clone(spec.Secrets)
	// Checked before the overlap policy acts, so a run that cannot start
	// replaces nothing.
	if err := s.checkJob(ctx, u, &spec); err != nil {
		return s.refused(ctx, f, missed, at, err)
	}
	active, err := s.db.ListJobs(ctx, store.JobFilter{User: sc.User, Schedule: sc.Name, States: []dspool.JobState{dspool.JobQueued, dspool.JobRunning}})
	if err != nil {
		return err
	}
	switch {
	case len(active) > 0 && sc.Overlap == dspool.OverlapSkip:
		return s.noRun(ctx, f, fmt.Sprintf("%sslot %s skipped: job %d of an earlier slot is still %s (overlap skip)", missed, at, active[0].ID, active[0].State))
	case len(active) > 0 && sc.Overlap == dspool.OverlapReplace:
		var ids []int64
		for _, j := range active {
			if _, err := s.cancel(ctx, j.ID); err != nil && dspool.ErrorCode(err) != dspool.EConflict {
				return err
			}
			ids = append(ids, j.ID)
		}
		f.Message = missed + fmt.Sprintf("cancelled %s of earlier slots (overlap replace)", jobIDs(ids))
	}
	j, _, err := s.submit(ctx, u, &spec, &f)
	switch {
	case errors.Is(err, store.ErrSlotFired):
		return nil
	case err != nil:
		return s.refused(ctx, f, missed, at, err)
	}
	s.log.Info("schedule fired", "schedule", sc.ID, "user", sc.User, "name", sc.Name, "slot", slot, "job", j.ID,
		"late", now.Sub(slot), "submitted", j.SubmittedAt.Sub(slot))
	return nil
}

// refused records a slot whose job was refused, when the refusal is for
// good (the owner may no longer use the pool, a secret is gone); a refusal
// worth another try (the store is short of room or unavailable) is
// returned instead, and the slot stays due.
func (s *Server) refused(ctx context.Context, f store.Firing, missed, at string, err error) error {
	switch dspool.ErrorCode(err) {
	case dspool.EInvalid, dspool.EForbidden, dspool.ENotFound, dspool.EConflict, dspool.ETooLarge:
		return s.noRun(ctx, f, fmt.Sprintf("%sslot %s not run: %s", missed, at, dspool.Message(err)))
	}
	return err
}

// noRun records f's slot as fired with no job, saying why.
func (s *Server) noRun(ctx context.Context, f store.Firing, why string) error {
	f.Job, f.Message = nil, why
	_, err := s.db.FireSchedule(ctx, f)
	if errors.Is(err, store.ErrSlotFired) {
		return nil
	}
	if err == nil {
		s.log.Warn("schedule slot without a run", "schedule", f.Schedule, "slot", f.Slot, "why", why)
	}
	return err
}

func jobIDs(ids []int64) string {
	if len(ids) == 1 {
		return fmt.Sprintf("job %d", ids[0])
	}
	return fmt.Sprintf("jobs %v", ids)
}
