package dspool

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Age is how long the store keeps something after it ended: a span (90d,
// 36h), or KeepForever. The zero value means the default of its setting.
type Age time.Duration

// KeepForever is the Age of what is never pruned ("never", or 0, in a
// config or a flag).
const KeepForever Age = -1

// MinAge is the shortest Age: a job must outlive its owner's look at how
// it ended (job show, job logs, a waiting CLI).
const MinAge = Age(time.Hour)

const maxAge = Age(100 * 365 * 24 * time.Hour)

// Default ages.
const (
	DefaultJobAge   = Age(90 * 24 * time.Hour)
	DefaultAuditAge = KeepForever
)

// ParseAge reads an Age: "never" or "0" (KeepForever), or a span of at
// least MinAge (90d, 36h, 1.5d; see ParseSpan). The error names field.
func ParseAge(field, s string) (Age, error) {
	switch v := strings.TrimSpace(s); v {
	case "never", "0":
		return KeepForever, nil
	case "":
		return 0, Invalid(field, "is empty: give an age such as 90d or 36h, or never")
	}
	d, err := ParseSpan(strings.TrimSpace(s))
	if err != nil {
		return 0, Invalid(field, "%s is not an age: give e.g. 90d or 36h, or never to keep everything", quote(s))
	}
	if Age(d) > maxAge {
		return 0, Invalid(field, "%s is over 100 years: give never to keep everything", quote(s))
	}
	if Age(d) < MinAge {
		return 0, Invalid(field, "%s is under %s: give at least %s (or never), so that owners see how their work ended", quote(s), MinAge, MinAge)
	}
	return Age(d), nil
}

// String says a as ParseAge reads it: "never", "90d", or a Go duration.
func (a Age) String() string {
	switch {
	case a < 0:
		return "never"
	case a == 0:
		return "default"
	case time.Duration(a)%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", time.Duration(a)/(24*time.Hour))
	}
	return time.Duration(a).String()
}

// Keeps reports whether a keeps everything.
func (a Age) Keeps() bool { return a < 0 }

// Or is a, or def when a is the zero value.
func (a Age) Or(def Age) Age {
	if a == 0 {
		return def
	}
	return a
}

func (a Age) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

func (a *Age) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if json.Unmarshal(b, &n) != nil || n != 0 {
			return fmt.Errorf("%s is not an age: write e.g. 90d or 36h (with a unit), or never", b)
		}
		s = "0"
	}
	v, err := ParseAge("age", s)
	if err != nil {
		return fmt.Errorf("%s", err.(*Error).Message)
	}
	*a = v
	return nil
}

// Retention says how long the store keeps what has ended; a control plane
// prunes what is older in the background. Zero values are the defaults.
type Retention struct {
	// Jobs: finished jobs and their attempts (default DefaultJobAge).
	Jobs Age `json:"jobs,omitempty"`
	// Sessions: ended SSH sessions and Jupyter servers (default
	// DefaultJobAge).
	Sessions Age `json:"sessions,omitempty"`
	// Events: pool events (default DefaultJobAge; a pool keeps its newest
	// MaxPoolEvents regardless).
	Events Age `json:"events,omitempty"`
	// Audit: audit entries (default DefaultAuditAge: kept).
	Audit Age `json:"audit,omitempty"`
	// AuditExport is a file that audit entries are appended to, as JSON
	// lines, before they are pruned ("": none).
	AuditExport string `json:"audit_export,omitempty"`
}

// WithDefaults returns r with every zero age set to its default.
func (r Retention) WithDefaults() Retention {
	r.Jobs = r.Jobs.Or(DefaultJobAge)
	r.Sessions = r.Sessions.Or(DefaultJobAge)
	r.Events = r.Events.Or(DefaultJobAge)
	r.Audit = r.Audit.Or(DefaultAuditAge)
	return r
}
