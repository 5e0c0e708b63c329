package dspool

import (
	"time"
)

// Overlap says what a schedule does at a slot while a run of an earlier
// slot is still queued or running.
type Overlap string

const (
	OverlapSkip    Overlap = "skip"    // no run for this slot
	OverlapQueue   Overlap = "queue"   // a run anyway, beside the earlier ones
	OverlapReplace Overlap = "replace" // cancel the earlier runs, then run
)

// Valid reports whether o is one of the policies.
func (o Overlap) Valid() bool {
	return o == OverlapSkip || o == OverlapQueue || o == OverlapReplace
}

// MaxSchedules is how many schedules one user may have.
const MaxSchedules = 100

// ScheduleSpec is what a user gives to create a schedule: when (a cron
// expression in a time zone), what to do about overlapping runs, and the
// job each slot submits.
type ScheduleSpec struct {
	Name string `json:"name"`
	// Cron is a crontab expression (minute hour day month weekday), six
	// fields with seconds first, or a descriptor (@daily, @every 1h).
	Cron string `json:"cron"`
	// Timezone is an IANA zone name the expression is read in (default
	// UTC).
	Timezone string  `json:"timezone,omitempty"`
	Overlap  Overlap `json:"overlap,omitempty"` // default skip
	// StartingDeadline: a slot the control plane missed (it was down) by
	// more than this is not run late; 0 runs the latest missed slot
	// however late.
	StartingDeadline Duration `json:"starting_deadline,omitempty"`
	Job              JobSpec  `json:"job"`
}

// Normalize fills defaults and validates s but for its cron expression
// (which the control plane parses, package cron), returning an EInvalid
// error that names the first offending field. The job's fields are named
// job.FIELD.
func (s *ScheduleSpec) Normalize() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	if err := ValidateText("timezone", s.Timezone, 64); err != nil {
		return err
	}
	if _, err := location(s.Timezone); err != nil {
		return Invalid("timezone", "%s is not a time zone: give an IANA name such as Europe/Lisbon, America/New_York or UTC", quote(s.Timezone))
	}
	if s.Overlap == "" {
		s.Overlap = OverlapSkip
	}
	if !s.Overlap.Valid() {
		return Invalid("overlap", "%s is not an overlap policy: use skip, queue or replace", quote(string(s.Overlap)))
	}
	if s.StartingDeadline < 0 || time.Duration(s.StartingDeadline) > MaxTimeLimit {
		return Invalid("starting_deadline", "%s is out of range: give a positive duration up to 8760h, or none", time.Duration(s.StartingDeadline))
	}
	// A schedule's runs are new jobs each: a key would make them one.
	s.Job.IdempotencyKey = ""
	return WithinField("job", s.Job.Normalize())
}

// Location is the schedule's time zone; s must have been normalized.
func (s *ScheduleSpec) Location() *time.Location {
	l, err := location(s.Timezone)
	if err != nil {
		return time.UTC
	}
	return l
}

// Schedule is a recurring job: its spec, its owner and where its slots
// stand. Each slot that runs submits a job like any other, whose Schedule
// names it.
type Schedule struct {
	ID   int64  `json:"id"`
	User string `json:"user"`
	ScheduleSpec
	Paused bool `json:"paused"`
	// LastSlot is the latest slot that fired (ran, was skipped or failed
	// to submit), and LastJob the job it submitted (0: none).
	LastSlot *time.Time `json:"last_slot"`
	LastJob  int64      `json:"last_job,omitempty"`
	// NextSlot is when it fires next; nil while paused.
	NextSlot *time.Time `json:"next_slot"`
	// Message says why the latest slot submitted no job, or ran late:
	// skipped for an earlier run, missed while the control plane was
	// down, refused (its owner lost access to the pool).
	Message   string    `json:"message,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}
