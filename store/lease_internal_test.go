package store

import (
	"context"
	"testing"
	"time"
)

// TestUpgradeToLeases: a store of the version before leases keeps its
// users and jobs, and takes a lease after the upgrade.
func TestUpgradeToLeases(t *testing.T) {
	ctx := context.Background()
	path := storeBefore(t, "CREATE TABLE leases",
		`INSERT INTO meta (key, value) VALUES ('uid_base', '20000')`,
		`INSERT INTO users (id, name, uid, gid, admin, created_at) VALUES (1, 'ada', 20000, 20000, 1, 0)`,
		`INSERT INTO jobs (id, user_id, name, pool, state, attempt, cpus, memory, gpus, time_limit, retries, priority, env, workdir, command, submitted_at)
			VALUES (5, 1, 'j', 'default', 'queued', 1, 1000, 1048576, 0, 0, 0, 0, '{}', '', '["true"]', 0)`)
	db, err := OpenAt(t, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if j, err := db.Job(ctx, 5); err != nil || j.User != "ada" {
		t.Errorf("the job of before the upgrade: %+v %v", j, err)
	}
	if l, led, err := db.Campaign(ctx, "a", "https://a", time.Second); err != nil || !led || l.Term != 1 {
		t.Errorf("campaign after the upgrade: %+v %v %v", l, led, err)
	}
}

// TestPostgresUpgradeToLeases: a PostgreSQL store of version 20, the first
// PostgreSQL schema, is upgraded by pgMigrations.
func TestPostgresUpgradeToLeases(t *testing.T) {
	if !OnPostgres() {
		t.Skip("runs with the PostgreSQL run of these tests")
	}
	ctx := context.Background()
	path := "v20"
	raw := RawAt(t, path)
	for _, q := range []string{pgSchema,
		`INSERT INTO meta (key, value) VALUES ('uid_base', '20000'), ('schema_version', '20')`,
		`INSERT INTO users (name, uid, gid, admin, created_at) VALUES ('ada', 20000, 20000, 1, 0)`} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db, err := OpenAt(t, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if u, err := db.User(ctx, "ada"); err != nil || u.UID != 20000 {
		t.Errorf("the user of before the upgrade: %+v %v", u, err)
	}
	if l, led, err := db.Campaign(ctx, "a", "https://a", time.Second); err != nil || !led || l.Term != 1 {
		t.Errorf("campaign after the upgrade: %+v %v %v", l, led, err)
	}
}
