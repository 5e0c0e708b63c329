package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func newSchedule(t *testing.T, name string) *dspool.ScheduleSpec {
	t.Helper()
	s := &dspool.ScheduleSpec{Name: name, Cron: "*/3 * * * * *", Timezone: "Europe/Lisbon", Job: dspool.JobSpec{Command: []string{"true"}}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestScheduleSlotFiresOnce: firings of one slot from many goroutines
// (a restarted loop racing an old one) store one job; the others are
// refused with ErrSlotFired and write nothing.
func TestScheduleSlotFiresOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	ctx := context.Background()
	db, err := store.OpenAt(t, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	slot := time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)
	spec := newSchedule(t, "nightly")
	s, err := db.CreateSchedule(ctx, u.ID, spec, slot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateSchedule(ctx, u.ID, spec, slot); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("a second schedule of the same name: got %v, want conflict", err)
	}
	if due, err := db.DueSchedules(ctx, slot.Add(-time.Second)); err != nil || len(due) != 0 {
		t.Errorf("due a second before its slot: %v %v, want none", due, err)
	}
	due, err := db.DueSchedules(ctx, slot)
	if err != nil || len(due) != 1 || due[0].ID != s.ID {
		t.Fatalf("due at its slot: %v %v, want schedule %d", due, err, s.ID)
	}
	following := slot.Add(3 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var jobs []*dspool.Job
	var refused int
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			job := s.Job
			j, err := db.FireSchedule(ctx, store.Firing{Schedule: s.ID, Expect: slot, Slot: slot, Following: following, UserID: u.ID, Job: &job})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				jobs = append(jobs, j)
			case errors.Is(err, store.ErrSlotFired):
				refused++
			default:
				t.Errorf("fire: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(jobs) != 1 || refused != 7 {
		t.Fatalf("8 firings of one slot: %d jobs, %d refused; want 1 job and 7 refused", len(jobs), refused)
	}
	j := jobs[0]
	if j.Schedule != "nightly" || j.Slot == nil || !j.Slot.Equal(slot) {
		t.Errorf("the slot's job links schedule %q slot %v, want nightly at %s", j.Schedule, j.Slot, slot)
	}
	l, err := db.ListJobs(ctx, store.JobFilter{User: "ada", Schedule: "nightly"})
	if err != nil || len(l) != 1 {
		t.Fatalf("jobs of the schedule: %v %v, want one", l, err)
	}
	db.Close()

	// Reopened, as after a restart: the slot is fired, the next one waits.
	db = open(t, path)
	s, err = db.Schedule(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.LastSlot == nil || !s.LastSlot.Equal(slot) || s.LastJob != j.ID || s.NextSlot == nil || !s.NextSlot.Equal(following) {
		t.Errorf("after the firing: last slot %v job %d next %v; want %s, %d, %s", s.LastSlot, s.LastJob, s.NextSlot, slot, j.ID, following)
	}
	if due, err := db.DueSchedules(ctx, slot.Add(time.Second)); err != nil || len(due) != 0 {
		t.Errorf("due after the slot fired: %v %v, want none", due, err)
	}
	job := s.Job
	if _, err := db.FireSchedule(ctx, store.Firing{Schedule: s.ID, Expect: slot, Slot: slot, Following: following, UserID: u.ID, Job: &job}); !errors.Is(err, store.ErrSlotFired) {
		t.Errorf("firing the fired slot again after a restart: got %v, want ErrSlotFired", err)
	}

	// Paused, it waits for no slot and a firing of its old one is refused;
	// resumed, it waits for the slot it is given.
	if s, err = db.PauseSchedule(ctx, s.ID); err != nil || !s.Paused || s.NextSlot != nil {
		t.Fatalf("pause: %+v %v", s, err)
	}
	if next, err := db.NextSlot(ctx); err != nil || next != nil {
		t.Errorf("next slot with the only schedule paused: %v %v, want none", next, err)
	}
	if _, err := db.FireSchedule(ctx, store.Firing{Schedule: s.ID, Expect: following, Slot: following, UserID: u.ID}); !errors.Is(err, store.ErrSlotFired) {
		t.Errorf("firing a paused schedule: got %v, want ErrSlotFired", err)
	}
	later := following.Add(time.Hour)
	if s, err = db.ResumeSchedule(ctx, s.ID, later); err != nil || s.Paused || s.NextSlot == nil || !s.NextSlot.Equal(later) {
		t.Fatalf("resume: %+v %v", s, err)
	}
	if next, err := db.NextSlot(ctx); err != nil || next == nil || !next.Equal(later) {
		t.Errorf("next slot: %v %v, want %s", next, err, later)
	}
	// A slot that submits nothing still counts as fired.
	if j, err := db.FireSchedule(ctx, store.Firing{Schedule: s.ID, Expect: later, Slot: later, Following: later.Add(time.Hour), Message: "skipped"}); err != nil || j != nil {
		t.Fatalf("a slot with no job: %v %v", j, err)
	}
	if s, err = db.Schedule(ctx, s.ID); err != nil || s.Message != "skipped" || !s.LastSlot.Equal(later) || s.LastJob != 0 {
		t.Errorf("after a slot with no job: %+v %v; want its message, slot and no job", s, err)
	}
	if err := db.DeleteSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Schedule(ctx, s.ID); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("a deleted schedule: got %v, want not found", err)
	}
	if j2, err := db.Job(ctx, j.ID); err != nil || j2.Schedule != "nightly" {
		t.Errorf("the job of a deleted schedule: %v %v; want it kept with its link", j2, err)
	}
}
