package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/dspool/dspool/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// The store's tests are its conformance suite: they run on SQLite, then
// again, in a second run of the test binary, on PostgreSQL (a throwaway
// cluster, or the server DSPOOL_TEST_POSTGRES names), each test on a
// database of its own.

// onEnv holds, in the second run, the URL of the PostgreSQL server the
// tests make their databases on.
const onEnv = "DSPOOL_STORE_TEST_ON"

func TestMain(m *testing.M) {
	code := m.Run()
	if code != 0 || OnPostgres() {
		os.Exit(code)
	}
	os.Exit(againOnPostgres())
}

// againOnPostgres runs the test binary again with the tests on PostgreSQL.
func againOnPostgres() int {
	admin := pgtest.Server()
	if admin == "" {
		c, err := pgtest.Start(false)
		if err != nil {
			if os.Getenv(pgtest.RequireEnv) == "1" {
				fmt.Fprintf(os.Stderr, "FAIL: the store's tests on PostgreSQL: %v\n", err)
				return 1
			}
			fmt.Fprintf(os.Stderr, "the store's tests ran on SQLite only: %v\n", err)
			return 0
		}
		defer c.Stop()
		admin = c.URL
	}
	fmt.Fprintln(os.Stderr, "the store's tests again, on PostgreSQL")
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), onEnv+"="+admin)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// OnPostgres says whether this run of the tests is on PostgreSQL.
func OnPostgres() bool { return os.Getenv(onEnv) != "" }

// SkipOnPostgres skips a test of what only SQLite has.
func SkipOnPostgres(tb testing.TB, why string) {
	tb.Helper()
	if OnPostgres() {
		tb.Skip("SQLite only: " + why)
	}
}

// databases maps the paths tests give OpenAt to the PostgreSQL databases
// that stand for them, so that a test reopens the same store.
var databases sync.Map

// At is the store that stands for path in this run: path itself on
// SQLite, a database of its own on PostgreSQL.
func At(tb testing.TB, path string) string {
	tb.Helper()
	admin := os.Getenv(onEnv)
	if admin == "" {
		return path
	}
	if u, ok := databases.Load(path); ok {
		return u.(string)
	}
	u := pgtest.NewDatabase(tb, admin)
	databases.Store(path, u)
	return u
}

// OpenAt opens the store that stands for path in this run.
func OpenAt(tb testing.TB, path string, opts Options) (*DB, error) {
	tb.Helper()
	return Open(context.Background(), At(tb, path), opts)
}

// RawAt opens the store that stands for path with no dspool between the
// test and the database: statements go as written (with ? placeholders),
// and nothing keeps them from breaking the store's rules.
func RawAt(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	where := At(tb, path)
	var db *sql.DB
	if IsPostgres(where) {
		cfg, err := pgx.ParseConfig(where)
		if err != nil {
			tb.Fatal(err)
		}
		db = sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	} else {
		var err error
		if db, err = sql.Open("sqlite", "file:"+where+"?_pragma=busy_timeout(10000)"); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() { db.Close() })
	return db
}
