package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// Kinds of work in a trace.
const (
	KindJob     = "job"
	KindSession = "session"
)

// TraceHeader is the first line of every trace that is not a comment.
const TraceHeader = "at,kind,pool,user,cpus,memory,gpus,duration"

// Trace limits.
const (
	MaxArrivals    = 1_000_000
	MaxLineBytes   = 1024
	MaxDuration    = 30 * 24 * time.Hour
	DefaultStartAt = "2026-01-05T00:00:00Z" // a Monday; time zero of a trace of offsets that names none
)

// Arrival is one piece of work arriving: a batch job submitted, or a user
// logging in (an SSH shell, a notebook start).
type Arrival struct {
	At   time.Time
	Kind string // KindJob or KindSession
	Pool string
	User string
	// What a job asks for. Sessions leave them zero: they reserve the
	// pool's sessions.cpus and sessions.memory.
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	GPUs   int
	// Duration is how long the job runs, or the session lasts, once it has
	// started.
	Duration time.Duration
	// Line is the arrival's line in its file (0 when it was not read from one).
	Line int
}

// Trace is a workload: arrivals in time order from Start.
type Trace struct {
	Start    time.Time
	Arrivals []Arrival
}

// End is when the trace's work would be done if none of it waited.
func (t *Trace) End() time.Time {
	end := t.Start
	for i := range t.Arrivals {
		if e := t.Arrivals[i].At.Add(t.Arrivals[i].Duration); e.After(end) {
			end = e
		}
	}
	return end
}

// ParseTrace reads a trace in CSV: one line per arrival, after the header
// line TraceHeader. Blank lines and lines starting with # are skipped, but
// for a "# start: TIME" line (RFC 3339) before the header, which sets the
// trace's time zero.
//
//	at        RFC 3339 time ("2026-03-02T08:31:00Z") or offset from the
//	          start as a Go duration ("8h31m"); whole seconds, in time order
//	kind      job or session
//	pool      the pool's name
//	user      who submits or logs in
//	cpus      a job's cpus ("2", "0.5"); empty for a session
//	memory    a job's memory ("8GiB"); empty for a session
//	gpus      a job's gpus, empty for none; empty for a session
//	duration  how long it runs once started, a Go duration ("1h30m"), whole seconds
//
// A trace uses either times or offsets, not both. Without a start line, a
// trace of times starts at its first arrival and a trace of offsets at
// DefaultStartAt. Errors name the line and the field.
func ParseTrace(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, MaxLineBytes), MaxLineBytes)
	t := &Trace{}
	var startSet, header, absolute, offsets bool
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			k, v, ok := strings.Cut(strings.TrimSpace(trimmed[1:]), ":")
			if !ok || strings.TrimSpace(k) != "start" {
				continue
			}
			if header || startSet {
				return nil, lineErr(lineNo, "start", "the start line must come once, before the header")
			}
			s, err := wholeTime(strings.TrimSpace(v))
			if err != nil {
				return nil, lineErr(lineNo, "start", "%v", err)
			}
			t.Start, startSet = s, true
			continue
		}
		if !header {
			if trimmed != TraceHeader {
				return nil, lineErr(lineNo, "header", "is %q: a trace's first line must be %s", clip(trimmed), TraceHeader)
			}
			header = true
			continue
		}
		if len(t.Arrivals) == MaxArrivals {
			return nil, lineErr(lineNo, "", "a trace holds at most %d arrivals", MaxArrivals)
		}
		a, off, abs, err := parseArrival(lineNo, line)
		if err != nil {
			return nil, err
		}
		if abs {
			absolute = true
		} else {
			offsets = true
		}
		if absolute && offsets {
			return nil, lineErr(lineNo, "at", "the trace mixes times and offsets: use one or the other")
		}
		if !startSet {
			if abs {
				t.Start = a.At
			} else {
				t.Start, _ = time.Parse(time.RFC3339, DefaultStartAt)
			}
			startSet = true
		}
		if !abs {
			a.At = t.Start.Add(off)
		}
		if a.At.Before(t.Start) {
			return nil, lineErr(lineNo, "at", "%s is before the trace's start %s", a.At.Format(time.RFC3339), t.Start.Format(time.RFC3339))
		}
		if n := len(t.Arrivals); n > 0 && a.At.Before(t.Arrivals[n-1].At) {
			return nil, lineErr(lineNo, "at", "%s is before the line above's %s: arrivals must be in time order",
				a.At.Format(time.RFC3339), t.Arrivals[n-1].At.Format(time.RFC3339))
		}
		t.Arrivals = append(t.Arrivals, a)
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, lineErr(lineNo+1, "", "is longer than %d bytes", MaxLineBytes)
		}
		return nil, fmt.Errorf("read trace: %w", err)
	}
	if !header {
		return nil, dspool.Invalid("trace", "has no header line: its first line must be %s", TraceHeader)
	}
	if !startSet {
		t.Start, _ = time.Parse(time.RFC3339, DefaultStartAt)
	}
	return t, nil
}

// parseArrival parses one line: its at is either a time (abs) or an
// offset from the trace's start, returned as off.
func parseArrival(lineNo int, line string) (a Arrival, off time.Duration, abs bool, err error) {
	f := strings.Split(line, ",")
	if len(f) != 8 {
		return a, 0, false, lineErr(lineNo, "", "has %d fields: want 8 (%s)", len(f), TraceHeader)
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	a = Arrival{Kind: f[1], Pool: f[2], User: f[3], Line: lineNo}
	// A duration has no T; an RFC 3339 time always has one.
	if strings.Contains(f[0], "T") {
		at, err := wholeTime(f[0])
		if err != nil {
			return a, 0, false, lineErr(lineNo, "at", "%v", err)
		}
		a.At, abs = at.UTC(), true
	} else if off, err = wholeDuration(f[0]); err != nil {
		if errors.Is(err, errNotDuration) {
			err = fmt.Errorf("%q is neither an RFC 3339 time (2026-03-02T08:30:00Z) nor an offset from the start (8h30m)", clip(f[0]))
		}
		return a, 0, false, lineErr(lineNo, "at", "%v", err)
	}
	switch a.Kind {
	case KindJob, KindSession:
	default:
		return a, off, abs, lineErr(lineNo, "kind", "%q is not a kind of work: use job or session", clip(a.Kind))
	}
	if err := dspool.ValidateName("pool", a.Pool); err != nil {
		return a, off, abs, lineErr(lineNo, "pool", "%s", strings.TrimPrefix(err.Error(), "pool: "))
	}
	if err := dspool.ValidateName("user", a.User); err != nil {
		return a, off, abs, lineErr(lineNo, "user", "%s", strings.TrimPrefix(err.Error(), "user: "))
	}
	if a.Kind == KindSession {
		for i, name := range []string{"cpus", "memory", "gpus"} {
			if f[4+i] != "" {
				return a, off, abs, lineErr(lineNo, name, "is %q: leave it empty for a session, which reserves the pool's sessions.cpus and sessions.memory", clip(f[4+i]))
			}
		}
	} else {
		var err error
		if a.CPUs, err = dspool.ParseCPU(f[4]); err != nil || a.CPUs <= 0 {
			if err == nil {
				err = fmt.Errorf("a job needs more than 0 cpus")
			}
			return a, off, abs, lineErr(lineNo, "cpus", "%v", err)
		}
		if _, num := strconv.ParseFloat(f[5], 64); num == nil && f[5] != "0" {
			return a, off, abs, lineErr(lineNo, "memory", "%q has no unit: write e.g. %sMiB or %sGiB", clip(f[5]), clip(f[5]), clip(f[5]))
		}
		if a.Memory, err = dspool.ParseBytes(f[5]); err != nil || a.Memory <= 0 {
			if err == nil {
				err = fmt.Errorf("a job needs more than 0 bytes of memory")
			}
			return a, off, abs, lineErr(lineNo, "memory", "%v", err)
		}
		if f[6] != "" {
			if a.GPUs, err = strconv.Atoi(f[6]); err != nil || a.GPUs < 0 || a.GPUs > dspool.MaxGPUs {
				return a, off, abs, lineErr(lineNo, "gpus", "%q is not a number of gpus between 0 and %d", clip(f[6]), dspool.MaxGPUs)
			}
		}
	}
	d, err := wholeDuration(f[7])
	if err != nil {
		return a, off, abs, lineErr(lineNo, "duration", "%v", err)
	}
	if d < time.Second || d > MaxDuration {
		return a, off, abs, lineErr(lineNo, "duration", "%s is out of range: give 1s to %s", d, MaxDuration)
	}
	a.Duration = d
	return a, off, abs, nil
}

func wholeTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%q is not an RFC 3339 time such as 2026-03-02T08:30:00Z", clip(s))
	}
	if t.Nanosecond() != 0 {
		return t, fmt.Errorf("%s has a fraction of a second: the simulator's clock steps whole seconds", clip(s))
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return t, fmt.Errorf("%s is out of range", clip(s))
	}
	return t, nil
}

var errNotDuration = errors.New("not a duration")

func wholeDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90s, 45m or 1h30m: %w", clip(s), errNotDuration)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%s has a fraction of a second: the simulator's clock steps whole seconds", clip(s))
	}
	if d < 0 || d > 10*365*24*time.Hour {
		return 0, fmt.Errorf("%s is out of range", clip(s))
	}
	return d, nil
}

func lineErr(line int, field, format string, args ...any) error {
	name := fmt.Sprintf("line %d", line)
	if field != "" {
		name += ": " + field
	}
	return dspool.Invalid(name, format, args...)
}

// clip keeps a quoted piece of the input short in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// WriteTrace writes t in the format ParseTrace reads: a start line, and
// times in the time zone of t.Start.
func WriteTrace(w io.Writer, t *Trace) error {
	var b bytes.Buffer
	loc := t.Start.Location()
	fmt.Fprintf(&b, "# start: %s\n%s\n", t.Start.Format(time.RFC3339), TraceHeader)
	for i := range t.Arrivals {
		a := &t.Arrivals[i]
		at := a.At.In(loc).Format(time.RFC3339)
		if a.Kind == KindSession {
			fmt.Fprintf(&b, "%s,%s,%s,%s,,,,%s\n", at, a.Kind, a.Pool, a.User, a.Duration)
		} else {
			gpus := ""
			if a.GPUs > 0 {
				gpus = strconv.Itoa(a.GPUs)
			}
			fmt.Fprintf(&b, "%s,%s,%s,%s,%s,%s,%s,%s\n", at, a.Kind, a.Pool, a.User, a.CPUs, size(a.Memory), gpus, a.Duration)
		}
		if b.Len() > 64<<10 {
			if _, err := w.Write(b.Bytes()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// size writes b exactly, in the largest binary unit that divides it.
func size(b dspool.Bytes) string {
	for _, u := range []struct {
		n    dspool.Bytes
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if b%u.n == 0 {
			return strconv.FormatInt(int64(b/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
