package e2e_test

import (
	"os"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/pgtest"
)

// postgres starts a PostgreSQL of the test's own, with fsync on, and
// returns the URL of an empty database on it; it skips the test where
// there is none, unless DSPOOL_REQUIRE_POSTGRES=1 (as in CI).
func postgres(t *testing.T) string {
	t.Helper()
	admin := pgtest.Server()
	if admin == "" {
		c, err := pgtest.Start(true)
		if err != nil {
			if os.Getenv(pgtest.RequireEnv) == "1" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		t.Cleanup(c.Stop)
		admin = c.URL
	}
	return pgtest.NewDatabase(t, admin)
}

// TestPostgresStore runs `dspool up` on a PostgreSQL store: jobs run, and
// what was acknowledged is there after a kill -9 of the control plane,
// which comes back on the same database and runs new work.
func TestPostgresStore(t *testing.T) {
	db := postgres(t)

	// A password on the command line is refused before anything starts.
	_, errs, code := cli(t, nil, "up", "--store", "postgres://dspool:hunter2@127.0.0.1:1/dspool")
	if code == 0 || !strings.Contains(errs, "PGPASSWORD") || strings.Contains(errs, "hunter2") {
		t.Fatalf("dspool up --store with a password: exit %d, stderr %q; want a refusal naming PGPASSWORD that does not repeat the password", code, errs)
	}

	cfg := upConfig{UIDBase: uidBase(320), Args: []string{"--store", db}}
	up := startUp(t, cfg)
	cfg.Data, cfg.Login = up.Data, up.Login
	if _, err := os.Stat(up.Data + "/dspool.db"); err == nil {
		t.Errorf("dspool up --store made an SQLite store in its data directory as well")
	}
	_, token := up.createUser(t, "e2epg320")
	user := up.userEnv(token)
	done, _, _ := submitWait(t, user, "--cpus", "0.1", "--memory", "64MiB", "--", "sh", "-c", "echo on postgres")
	if done.State != dspool.JobSucceeded {
		t.Fatalf("a job on a PostgreSQL store: %s (%s), want succeeded", done.State, done.Message)
	}
	if got := cliOK(t, user, "job", "logs", itoa(done.ID)); got != "on postgres\n" {
		t.Errorf("its output: %q", got)
	}
	applyPool(t, up, "name: idle\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 0\n")
	queued := submit(t, user, "--pool", "idle", "--", "true")

	// dspool backup says what to use instead.
	_, errs, code = cli(t, up.env(), "backup", t.TempDir()+"/b.db")
	if code == 0 || !strings.Contains(errs, "pg_dump") {
		t.Errorf("dspool backup of a PostgreSQL store: exit %d, stderr %q; want a refusal naming pg_dump", code, errs)
	}

	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	up2 := startUp(t, cfg)
	user = up2.userEnv(token)
	if j := job(t, user, done.ID); j.State != dspool.JobSucceeded {
		t.Errorf("after kill -9: job %d is %s, want succeeded", done.ID, j.State)
	}
	if j := job(t, user, queued); j.State != dspool.JobQueued {
		t.Errorf("after kill -9: job %d is %s, want queued", queued, j.State)
	}
	again, _, _ := submitWait(t, user, "--cpus", "0.1", "--memory", "64MiB", "--", "true")
	if again.State != dspool.JobSucceeded || again.ID <= queued {
		t.Errorf("a job after the restart: id %d, %s; want succeeded with an id past %d", again.ID, again.State, queued)
	}
}
