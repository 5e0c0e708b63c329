package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/dspool/dspool"
)

// Intervals are clipped to the window in SQL, on integer nanoseconds: an
// interval [start, end) adds max(0, min(end, until) - max(start, since)), an
// open one ending at until. Sums are in floating point (SQLite's total()),
// which cannot overflow as a sum of nanoseconds can.

// nodeEnd is when a node stopped counting: when it went, for one that is
// gone (its last contact, or its creation, when that is not known), else
// the end of the window (?2).
const nodeEnd = `CASE WHEN state = 'gone' THEN COALESCE(gone_at, last_seen, created_at) ELSE ?2 END`

// usageQueries are the queries of a usage report in one store's SQL: sum,
// greatest and least write its floating-point sum and its two-argument max
// and min.
type usageQueries struct{ pools, jobs, sessions string }

var liteUsage, pgUsage = newUsageQueries(
	func(x string) string { return "total(" + x + ")" },
	func(a, b string) string { return "max(" + a + ", " + b + ")" },
	func(a, b string) string { return "min(" + a + ", " + b + ")" },
), newUsageQueries(
	func(x string) string { return "COALESCE(SUM(CAST(" + x + " AS DOUBLE PRECISION)), 0)" },
	func(a, b string) string { return "GREATEST(" + a + ", " + b + ")" },
	func(a, b string) string { return "LEAST(" + a + ", " + b + ")" },
)

// newUsageQueries writes the queries: the pools' node time; and the
// attempts and sessions of the window (?1, ?2), of one user (?3) or of
// every user (?3 empty), where the OR terms let the store use the
// finished_at and ended_at indexes.
func newUsageQueries(sum func(string) string, greatest, least func(a, b string) string) usageQueries {
	clip := func(end, start string) string {
		return greatest("0", least(end, "?2")+" - "+greatest(start, "?1"))
	}
	return usageQueries{
		pools: `SELECT pool, ` + sum(clip(nodeEnd, "created_at")) + `
			FROM nodes WHERE created_at < ?2 AND ` + nodeEnd + ` > ?1 GROUP BY pool`,
		jobs: `SELECT u.name, ` + sum("d") + `, ` + sum("d * j.cpus / 1000.0") + `, ` + sum("d * j.gpus") + ` FROM (
			SELECT job_id, ` + clip("COALESCE(finished_at, ?2)", "started_at") + ` AS d FROM attempts
			WHERE (finished_at IS NULL OR finished_at > ?1) AND started_at IS NOT NULL AND started_at < ?2) a
			JOIN jobs j ON j.id = a.job_id JOIN users u ON u.id = j.user_id
			WHERE ?3 = '' OR u.name = ?3 GROUP BY u.name`,
		sessions: `SELECT u.name, ` + sum("d") + `, ` + sum("d * CASE WHEN gpus = '' THEN 0 ELSE length(gpus) - length(replace(gpus, ',', '')) + 1 END") + ` FROM (
			SELECT s.user_id, s.gpu_indices AS gpus, ` + clip("COALESCE(s.ended_at, ?2)", "s.started_at") + ` AS d
			FROM sessions s WHERE (s.ended_at IS NULL OR s.ended_at > ?1) AND s.started_at < ?2) s
			JOIN users u ON u.id = s.user_id
			WHERE ?3 = '' OR u.name = ?3
			GROUP BY u.name`,
	}
}

func (db *DB) usageQueries() usageQueries {
	if db.pg {
		return pgUsage
	}
	return liteUsage
}

// Usage reports the use of the window [since, until], grouped by. By pool,
// it has every pool that exists and every pool with node time in the
// window. By user, it has the users who used anything in the window; with
// user set, only that user, with zeros when they used nothing.
func (db *DB) Usage(ctx context.Context, since, until time.Time, by dspool.UsageBy, user string) (*dspool.UsageReport, error) {
	rep := &dspool.UsageReport{Since: since.UTC(), Until: until.UTC(), By: by}
	var err error
	switch by {
	case dspool.UsageByPool:
		rep.Pools, err = db.poolUsage(ctx, since, until)
	case dspool.UsageByUser:
		rep.Users, err = db.userUsage(ctx, since, until, user)
	default:
		err = dspool.Invalid("by", "%q is not a grouping: use user or pool", by)
	}
	if err != nil {
		return nil, fmt.Errorf("usage by %s: %w", by, err)
	}
	return rep, nil
}

func (db *DB) poolUsage(ctx context.Context, since, until time.Time) ([]dspool.PoolUsage, error) {
	secs, err := db.sums(ctx, db.usageQueries().pools, 1, since, until)
	if err != nil {
		return nil, err
	}
	pools, err := db.Pools(ctx)
	if err != nil {
		return nil, err
	}
	price := map[string]float64{}
	for _, p := range pools {
		price[p.Name] = p.PricePerNodeHour
		if _, ok := secs[p.Name]; !ok {
			secs[p.Name] = []float64{0}
		}
	}
	out := make([]dspool.PoolUsage, 0, len(secs))
	for name, s := range secs {
		u := dspool.PoolUsage{Pool: name, NodeSeconds: s[0], NodeHours: s[0] / 3600, PricePerNodeHour: price[name]}
		u.Cost = u.NodeHours * u.PricePerNodeHour
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pool < out[j].Pool })
	return out, nil
}

func (db *DB) userUsage(ctx context.Context, since, until time.Time, user string) ([]dspool.UserUsage, error) {
	jobs, err := db.sums(ctx, db.usageQueries().jobs, 3, since, until, user)
	if err != nil {
		return nil, err
	}
	sessions, err := db.sums(ctx, db.usageQueries().sessions, 2, since, until, user)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	if user != "" {
		names[user] = true
	}
	for n := range jobs {
		names[n] = true
	}
	for n := range sessions {
		names[n] = true
	}
	out := make([]dspool.UserUsage, 0, len(names))
	for n := range names {
		u := dspool.UserUsage{User: n}
		if j := jobs[n]; j != nil {
			u.JobSeconds, u.CPUSeconds, u.GPUSeconds = j[0], j[1], j[2]
		}
		if s := sessions[n]; s != nil {
			u.SessionSeconds = s[0]
			u.GPUSeconds += s[1] // GPUs a session held count as a job's do
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out, nil
}

// sums runs a usage query whose rows are a name and n sums of nanoseconds,
// and returns the sums in seconds by name.
func (db *DB) sums(ctx context.Context, q string, n int, since, until time.Time, more ...any) (map[string][]float64, error) {
	rows, err := db.r.QueryContext(ctx, q, append([]any{unixNano(since), unixNano(until)}, more...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]float64{}
	for rows.Next() {
		var name string
		vals := make([]float64, n)
		dest := []any{&name}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		for i := range vals {
			vals[i] /= 1e9
		}
		out[name] = vals
	}
	return out, rows.Err()
}

// EndedAttempt is an attempt that ran and ended, with what its job held.
type EndedAttempt struct {
	Job        int64
	Number     int
	User, Team string
	CPUs       dspool.MilliCPU
	Memory     dspool.Bytes
	GPUs       int
	StartedAt  time.Time
	FinishedAt time.Time
}

// AttemptsEnded returns the attempts that started and ended after since,
// in the order they ended: what fair share charges as they end.
func (db *DB) AttemptsEnded(ctx context.Context, since time.Time) ([]EndedAttempt, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT a.job_id, a.number, u.name, j.team, j.cpus, j.memory, j.gpus, a.started_at, a.finished_at
		FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN users u ON u.id = j.user_id
		WHERE a.finished_at > ? AND a.started_at IS NOT NULL ORDER BY a.finished_at`, unixNano(since))
	if err != nil {
		return nil, fmt.Errorf("attempts ended since %s: %w", since.Format(time.RFC3339), err)
	}
	defer rows.Close()
	var out []EndedAttempt
	for rows.Next() {
		var a EndedAttempt
		var started, finished int64
		if err := rows.Scan(&a.Job, &a.Number, &a.User, &a.Team, &a.CPUs, &a.Memory, &a.GPUs, &started, &finished); err != nil {
			return nil, err
		}
		a.StartedAt, a.FinishedAt = time.Unix(0, started), time.Unix(0, finished)
		out = append(out, a)
	}
	return out, rows.Err()
}
