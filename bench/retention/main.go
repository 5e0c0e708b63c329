// Command retention measures what the store's retention costs the API:
// `dspool up` starts on a store that holds many rows past their retention
// (finished jobs with their attempts, ended sessions, pool events, audit
// entries), prunes them in the background a minute after its start, and
// meanwhile clients submit, cancel and list jobs at a steady rate; it
// reports how long the prune took and the API's latency before and during
// it. See bench/README.md.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/store"
)

const (
	benchAdmin = "dspoolprune" // the admin the seeded rows belong to
	uidOffset  = 300           // apart from the other benchmarks' uids
)

// Sizes are how much the benchmark does.
type Sizes struct {
	Rows       int           `json:"rows"`    // past their retention, in all
	Clients    int           `json:"clients"` // each submits, cancels and lists a job every Interval
	Interval   time.Duration `json:"-"`
	IntervalMs float64       `json:"interval_ms"`
}

// Result is everything a run measured.
type Result struct {
	Sizes       Sizes          `json:"sizes"`
	CPUs        int            `json:"cpus"`
	Version     string         `json:"version,omitempty"`
	Seeded      Seeded         `json:"seeded"`
	Pruned      string         `json:"pruned"` // the control plane's log line
	PruneS      float64        `json:"prune_s"`
	BatchMaxMs  float64        `json:"longest_batch_ms"` // the longest a batch held the store's writer
	RowsPerS    float64        `json:"rows_per_s"`
	Exported    int            `json:"audit_exported"`
	Before      map[string]Lat `json:"before"` // by request: submit, cancel, list
	During      map[string]Lat `json:"during"`
	Errors      int            `json:"errors"`
	FirstError  string         `json:"first_error,omitempty"`
	Load1Before float64        `json:"load1_before"`
	Load1After  float64        `json:"load1_after"`
}

func main() {
	rows := flag.Int("rows", 200000, "rows past their retention to seed and prune")
	clients := flag.Int("clients", 4, "API clients, each submitting, cancelling and listing a job every -interval")
	interval := flag.Duration("interval", 50*time.Millisecond, "each client's interval")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data, its log up.log, the audit export)")
	flag.Parse()
	n := Sizes{Rows: *rows, Clients: *clients, Interval: *interval, IntervalMs: float64(interval.Microseconds()) / 1000}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *bin, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut string, keep bool) error {
	r := &Result{Sizes: n, CPUs: runtime.NumCPU(), Load1Before: host.Load1()}
	pr, err := host.Prepare(ctx, "dspool-bench-retention-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	r.Version = pr.Version
	data := filepath.Join(pr.Dir, "data")
	uidBase := host.UIDBase() + uidOffset
	t0 := time.Now()
	if r.Seeded, err = seed(ctx, filepath.Join(data, "dspool.db"), uidBase, n.Rows); err != nil {
		return fmt.Errorf("seed the store: %w", err)
	}
	host.Logf("seeded %d rows past their retention in %.1fs", r.Seeded.total(), time.Since(t0).Seconds())
	export := filepath.Join(pr.Dir, "audit.jsonl")
	up, err := host.StartUp(ctx, pr.Bin, pr.Dir, []string{"--data", data, "--listen", "127.0.0.1:0", "--ssh-listen", "off", "--nodes", "0",
		"--admin", benchAdmin, "--uid-base", strconv.Itoa(uidBase),
		"--retention", "1h", "--audit-retention", "1h", "--audit-export", export}, func(*api.Client) bool { return true })
	if err != nil {
		return err
	}
	defer up.Stop()
	host.Logf("dspool up at %s; it prunes a minute after its start, while %d clients submit, cancel and list a job every %s",
		up.Client.Server, n.Clients, n.Interval)
	samples, line, err := load(ctx, up, n)
	if err != nil {
		return fmt.Errorf("%w (dspool's log: %s; keep it with -keep)", err, up.Log)
	}
	if err := r.split(samples, line); err != nil {
		return fmt.Errorf("%w (dspool's log: %s; keep it with -keep)", err, up.Log)
	}
	r.Exported = countLines(export)
	r.Load1After = host.Load1()
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

// Seeded is how many rows of each kind the store held past their
// retention.
type Seeded struct {
	Jobs     int `json:"jobs"`
	Attempts int `json:"attempts"`
	Sessions int `json:"sessions"`
	Events   int `json:"events"`
	Audit    int `json:"audit"`
}

func (s Seeded) total() int { return s.Jobs + s.Attempts + s.Sessions + s.Events + s.Audit }

// seed makes a store with the admin and rows rows that ended 100 days ago:
// 40% jobs and 40% their attempts, 10% sessions, 5% events, 5% audit
// entries. They are written with SQL in one transaction: through the
// store's methods each would be a transaction of its own.
func seed(ctx context.Context, path string, uidBase, rows int) (Seeded, error) {
	s := Seeded{Jobs: rows * 4 / 10, Sessions: rows / 10, Events: rows / 20}
	s.Attempts = s.Jobs
	s.Audit = rows - s.Jobs - s.Attempts - s.Sessions - s.Events
	db, err := store.Open(ctx, path, store.Options{UIDBase: uidBase})
	if err != nil {
		return s, err
	}
	u, err := db.CreateUser(ctx, benchAdmin, true)
	db.Close()
	if err != nil {
		return s, err
	}
	c, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return s, err
	}
	defer c.Close()
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return s, err
	}
	defer tx.Rollback()
	old := time.Now().Add(-100 * 24 * time.Hour).UnixNano()
	// ?1 is how many rows; row i ended i ms after ?2 (100 days ago); ?3
	// is the admin's user id.
	counted := `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) `
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{counted + `INSERT INTO jobs (user_id, name, pool, state, exit_code, attempt, node, cpus, memory, gpus, time_limit, retries, priority,
			env, workdir, command, submitted_at, started_at, finished_at)
			SELECT ?3, 'seeded', 'default', 'succeeded', 0, 1, 'n-gone', 1000, 1073741824, 0, 0, 0, 0, '{}', '', '["true"]',
			?2 + i * 1000000, ?2 + i * 1000000, ?2 + i * 1000000 FROM n`, []any{s.Jobs, old, u.ID}},
		{`INSERT INTO attempts (job_id, number, node, started_at, finished_at, exit_code)
			SELECT id, 1, 'n-gone', finished_at, finished_at, 0 FROM jobs`, nil},
		{counted + `INSERT INTO sessions (id, user_id, kind, pool, node, cpus, memory, state, started_at, last_activity, ended_at, end_reason)
			SELECT 's-seeded-' || i, ?3, 'ssh', 'default', 'n-gone', 1000, 1073741824, 'ended', ?2 + i * 1000000, ?2 + i * 1000000, ?2 + i * 1000000,
			'logged out' FROM n`, []any{s.Sessions, old, u.ID}},
		{counted + `INSERT INTO pool_events (pool, at, kind, message) SELECT 'seeded-' || (i % 10), ?2 + i * 1000000, 'scale_out', 'seeded' FROM n`,
			[]any{s.Events, old}},
		{counted + `INSERT INTO audit (at, actor, action, target, remote, outcome, detail)
			SELECT ?2 + i * 1000000, 'ada', 'login.ssh', 'user ada', '192.0.2.1:22', 'failure', 'seeded' FROM n`, []any{s.Audit, old}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return s, fmt.Errorf("%.60s...: %w", strings.Join(strings.Fields(q.sql), " "), err)
		}
	}
	return s, tx.Commit()
}

// sample is one API request: when it began, what it was, how long it took.
type sample struct {
	at   time.Time
	op   string
	took time.Duration
	err  error
}

// load runs the clients until the control plane logs its prune, and 5 s
// more; it returns every request and the prune's log line.
func load(ctx context.Context, up *host.Up, n Sizes) ([]sample, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var samples []sample
	record := func(at time.Time, op string, err error) {
		mu.Lock()
		samples = append(samples, sample{at: at, op: op, took: time.Since(at), err: err})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for range n.Clients {
		wg.Go(func() {
			t := time.NewTicker(n.Interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				at := time.Now()
				j, err := up.Client.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}}, 0)
				record(at, "submit", err)
				if err == nil {
					at = time.Now()
					_, err = up.Client.CancelJob(ctx, j.ID)
					record(at, "cancel", err)
				}
				at = time.Now()
				_, err = up.Client.Jobs(ctx, api.JobQuery{Limit: 20})
				record(at, "list", err)
			}
		})
	}
	var line string
	err := host.Poll(ctx, 10*time.Minute, 200*time.Millisecond, func() (bool, error) {
		line = pruneLine(up.Log)
		return line != "", nil
	})
	if err == nil {
		t := time.NewTimer(5 * time.Second)
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
		}
	}
	cancel()
	wg.Wait()
	if err != nil {
		return nil, "", fmt.Errorf("wait for the prune: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return samples, line, nil
}

// pruneLine is the control plane's log line that says what a prune
// removed, or "".
func pruneLine(log string) string {
	f, err := os.Open(log)
	if err != nil {
		return ""
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if strings.Contains(sc.Text(), "retention: pruned") {
			return sc.Text()
		}
	}
	return ""
}

// logField is the value of key=VALUE in a log line.
func logField(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// split sorts the samples into before and during the prune, by the log
// line's time and duration.
func (r *Result) split(samples []sample, line string) error {
	r.Pruned = line
	end, err := time.Parse(time.RFC3339Nano, logField(line, "time"))
	if err != nil {
		return fmt.Errorf("the prune's log line has no time: %q", line)
	}
	took, err := time.ParseDuration(logField(line, "took"))
	if err != nil {
		return fmt.Errorf("the prune's log line has no duration: %q", line)
	}
	for _, k := range []struct {
		key  string
		want int
	}{{"jobs", r.Seeded.Jobs}, {"sessions", r.Seeded.Sessions}, {"events", r.Seeded.Events}, {"audit", r.Seeded.Audit}} {
		if got, _ := strconv.Atoi(logField(line, k.key)); got != k.want {
			return fmt.Errorf("the prune removed %d %s, want the %d seeded: %q", got, k.key, k.want, line)
		}
	}
	if b, err := time.ParseDuration(logField(line, "longest_batch")); err == nil {
		r.BatchMaxMs = float64(b.Microseconds()) / 1000
	}
	r.PruneS = took.Seconds()
	r.RowsPerS = float64(r.Seeded.total()) / r.PruneS
	start := end.Add(-took)
	before, during := map[string][]float64{}, map[string][]float64{}
	for _, s := range samples {
		if errors.Is(s.err, context.Canceled) {
			continue // the load's end
		}
		if s.err != nil {
			if r.Errors++; r.FirstError == "" {
				r.FirstError = s.err.Error()
			}
			continue
		}
		ms := float64(s.took.Microseconds()) / 1000
		switch {
		case s.at.Add(s.took).Before(start):
			before[s.op] = append(before[s.op], ms)
		case s.at.Before(end):
			during[s.op] = append(during[s.op], ms)
		}
	}
	if len(during["submit"]) == 0 {
		return errors.New("no request was answered during the prune")
	}
	r.Before, r.During = dists(before), dists(during)
	return nil
}

func countLines(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
