// Command joblist measures a page of `dspool job list` when the store holds
// many finished jobs (1,000,000 by default), on SQLite and on PostgreSQL (a
// throwaway cluster of Debian's, fsync on) in the same run: the first page
// of the admin's jobs, of everyone's, and a page from the middle. See
// bench/README.md.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/internal/pgtest"
	"github.com/dspool/dspool/store"
	_ "github.com/jackc/pgx/v5/stdlib"
)

const (
	benchAdmin = "dspoollist" // the admin the seeded jobs belong to
	uidOffset  = 450          // apart from the other benchmarks' uids
)

// Lat is a request's latency over the samples.
type Lat struct{ P50Ms, P99Ms float64 }

func main() {
	jobs := flag.Int("jobs", 1000000, "finished jobs in the store")
	requests := flag.Int("requests", 200, "requests of each page")
	short := flag.Bool("short", false, "20,000 jobs and 20 requests: a quick check that it works")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	if *short {
		*jobs, *requests = 20000, 20
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *jobs, *requests, *bin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var pages = []string{"the admin's first page", "everyone's first page", "a page from the middle"}

func run(ctx context.Context, jobs, requests int, bin string, keep bool) error {
	pr, err := host.Prepare(ctx, "dspool-bench-joblist-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	pg, err := pgtest.Start(true)
	if err != nil {
		return err
	}
	defer pg.Stop()
	where, err := pgtest.NewDatabaseURL(pg.URL)
	if err != nil {
		return err
	}
	load := host.Load1()
	res := map[string]map[string]Lat{}
	for _, st := range []struct{ name, where string }{
		{"SQLite", filepath.Join(pr.Dir, "sqlite", "data", "dspool.db")},
		{"PostgreSQL", where},
	} {
		if res[st.name], err = measure(ctx, pr, st.name, st.where, jobs, requests); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	fmt.Printf("\na page of 100 of `job list` with %d finished jobs in the store, %d requests each (load1 %.2f before, %.2f after)\n",
		jobs, requests, load, host.Load1())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "page\tSQLite p50\tp99\tPostgreSQL p50\tp99\ttarget")
	for _, p := range pages {
		l, g := res["SQLite"][p], res["PostgreSQL"][p]
		fmt.Fprintf(tw, "%s\t%.2f ms\t%.2f ms\t%.2f ms\t%.2f ms\tp99 ≤ 50 ms: %s\n", p, l.P50Ms, l.P99Ms, g.P50Ms, g.P99Ms,
			map[bool]string{true: "met", false: "missed"}[max(l.P99Ms, g.P99Ms) <= 50])
	}
	return tw.Flush()
}

// measure seeds the store at where, starts `dspool up` on it and times
// the pages.
func measure(ctx context.Context, pr *host.Prepared, name, where string, jobs, requests int) (map[string]Lat, error) {
	dir := filepath.Join(pr.Dir, "sqlite")
	args := []string{}
	if store.IsPostgres(where) {
		dir = filepath.Join(pr.Dir, "postgres")
		args = append(args, "--store", where)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	uidBase := host.UIDBase() + uidOffset
	t0 := time.Now()
	if err := seed(ctx, where, uidBase, jobs); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	host.Logf("%s: seeded %d finished jobs in %.1fs", name, jobs, time.Since(t0).Seconds())
	up, err := host.StartUp(ctx, pr.Bin, dir, append(args, "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--ssh-listen", "off", "--nodes", "0", "--admin", benchAdmin, "--uid-base", strconv.Itoa(uidBase)), func(*api.Client) bool { return true })
	if err != nil {
		return nil, err
	}
	defer up.Stop()
	queries := map[string]api.JobQuery{
		pages[0]: {Limit: 100},
		pages[1]: {AllUsers: true, Limit: 100},
		pages[2]: {AllUsers: true, Limit: 100, Before: int64(jobs / 2)},
	}
	out := map[string]Lat{}
	for _, p := range pages {
		var ms []float64
		for range requests {
			t := time.Now()
			l, err := up.Client.Jobs(ctx, queries[p])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if len(l.Jobs) != 100 {
				return nil, fmt.Errorf("%s: %d jobs, want 100", p, len(l.Jobs))
			}
			ms = append(ms, float64(time.Since(t).Microseconds())/1000)
		}
		slices.Sort(ms)
		out[p] = Lat{P50Ms: ms[(len(ms)+1)/2-1], P99Ms: ms[(99*len(ms)+99)/100-1]}
		host.Logf("%s: %s: p50 %.2f ms, p99 %.2f ms", name, p, out[p].P50Ms, out[p].P99Ms)
	}
	return out, nil
}

// seed makes the store with its admin and jobs finished jobs of the
// admin's, written with SQL in one transaction (through the store's
// methods each would be a transaction of its own).
func seed(ctx context.Context, where string, uidBase, jobs int) error {
	db, err := store.Open(ctx, where, store.Options{UIDBase: uidBase})
	if err != nil {
		return err
	}
	u, err := db.CreateUser(ctx, benchAdmin, true)
	db.Close()
	if err != nil {
		return err
	}
	// ?1 is how many, ?2 when the first ended, ?3 the admin's id.
	driver, dsn, rows := "sqlite", "file:"+where+"?_pragma=busy_timeout(10000)",
		`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) SELECT i FROM n`
	insert := `INSERT INTO jobs (user_id, name, pool, state, exit_code, attempt, node, cpus, memory, gpus, time_limit, retries, priority,
		env, workdir, command, submitted_at, started_at, finished_at)
		SELECT ?3, 'seeded', 'default', 'succeeded', 0, 1, 'n-gone', 1000, 1073741824, 0, 0, 0, 0, '{}', '', '["true"]',
		?2 + s.i * 1000000, ?2 + s.i * 1000000, ?2 + s.i * 1000000 FROM (`
	if store.IsPostgres(where) {
		driver, dsn, rows = "pgx", where, `SELECT CAST(g.i AS BIGINT) AS i FROM generate_series(1, CAST(?1 AS BIGINT)) AS g(i)`
	}
	q := insert + rows + `) AS s`
	if driver == "pgx" {
		q = strings.ReplaceAll(q, "?", "$")
	}
	c, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer c.Close()
	old := time.Now().Add(-30 * 24 * time.Hour).UnixNano()
	if _, err = c.ExecContext(ctx, q, jobs, old, u.ID); err != nil || driver != "pgx" {
		return err
	}
	// PostgreSQL plans by its statistics, which autovacuum gathers within a
	// minute of a change this size; a bulk load is measured once it has.
	_, err = c.ExecContext(ctx, `ANALYZE jobs`)
	return err
}
