package dspool

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UsageBy is how a usage report is grouped.
type UsageBy string

const (
	UsageByUser UsageBy = "user"
	UsageByPool UsageBy = "pool"
)

// DefaultUsageWindow is the window `dspool usage` reports on by default.
const DefaultUsageWindow = 30 * 24 * time.Hour

// UsageReport is the use of the pools in the window [Since, Until]: by pool
// (node time and its cost, in Pools) or by user (job and session time, in
// Users; the other list is null). Every interval is clipped to the window;
// one still open counts until Until.
type UsageReport struct {
	Since time.Time   `json:"since"`
	Until time.Time   `json:"until"`
	By    UsageBy     `json:"by"`
	Pools []PoolUsage `json:"pools"`
	Users []UserUsage `json:"users"`
}

// PoolUsage is the node time of one pool: every node from its creation until
// it is gone, whatever its state (a lost or draining node still costs).
// Cost is NodeHours x PricePerNodeHour; a pool that no longer exists has no
// price.
type PoolUsage struct {
	Pool             string  `json:"pool"`
	NodeSeconds      float64 `json:"node_seconds"`
	NodeHours        float64 `json:"node_hours"`
	PricePerNodeHour float64 `json:"price_per_node_hour"`
	Cost             float64 `json:"cost"`
}

// UserUsage is one user's use: JobSeconds is the wall time of their jobs'
// attempts, CPUSeconds and GPUSeconds that time times the cpus and GPUs each
// job held, SessionSeconds the time their SSH and Jupyter sessions were
// open.
type UserUsage struct {
	User           string  `json:"user"`
	JobSeconds     float64 `json:"job_seconds"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	GPUSeconds     float64 `json:"gpu_seconds"`
	SessionSeconds float64 `json:"session_seconds"`
}

// ParseUsageBy checks a grouping, naming field in its error.
func ParseUsageBy(field, s string) (UsageBy, error) {
	switch b := UsageBy(s); b {
	case UsageByUser, UsageByPool:
		return b, nil
	case "":
		return UsageByUser, nil
	}
	return "", Invalid(field, "%s is not a grouping: use user or pool", quote(s))
}

// ParseSpan reads a span of time back from now: a Go duration (90m, 36h) or
// a number of days (7d, 30d).
func ParseSpan(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 && n <= 100*365 {
			return time.Duration(n * 24 * float64(time.Hour)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s is not a span of time: use e.g. 1h, 36h, 7d or 30d", quote(s))
	}
	return d, nil
}

// ParseSince reads the start of a window: a span back from now (see
// ParseSpan) or an RFC 3339 time. The error names field.
func ParseSince(field, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.After(now) {
			return time.Time{}, Invalid(field, "%s is in the future: give a time before now", s)
		}
		return t, nil
	}
	d, err := ParseSpan(s)
	if err != nil {
		return time.Time{}, Invalid(field, "%s is not a span of time or a time: use e.g. 1h, 7d or 2026-01-02T15:04:05Z", quote(s))
	}
	return now.Add(-d), nil
}
