// Package sqlite is dspool's embedded store: the durable truth about users,
// tokens, pools, nodes and jobs, in one SQLite file (modernc.org/sqlite, pure
// Go).
//
// Every state change is one transaction through a single writer connection;
// reads use a separate pool and never block writes (WAL). A write returns only
// once it is durable (synchronous=FULL). Job state rules are not decided here:
// they come from the dspool package's transitions.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	_ "modernc.org/sqlite"
)

// DB is an open store.
type DB struct {
	w, r   *sql.DB
	path   string
	submit chan *submitReq
	done   chan struct{}
	now    func() time.Time
	events eventCounts
	room   *room
	// pg: the store is a PostgreSQL database (postgres.go), not an
	// SQLite file.
	pg bool
	// fence is the term of the lease this store writes under; 0 for none
	// (lease.go).
	fence atomic.Int64
	// lw is the connection the lease is kept on, apart from the writer's
	// (PostgreSQL; db.w on SQLite), so that no write delays a renewal.
	lw *sql.DB
}

// Options configures Open.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// UIDBase is the first uid/gid given to users; 0 means 20000.
	UIDBase int
	// Reserve is the room the store keeps on its disk for the writes that
	// keep running work correct when the disk fills (room.go); 0 means
	// DefaultReserve, negative none.
	Reserve int64
}

// schemaVersion is the version a store has after every migration.
var schemaVersion = 1 + len(migrations)

// migrations[i] upgrades a store from version i+1 to i+2. A new store gets
// schema (version 1), then each of them, in one transaction.
var migrations = []string{
	// 2: SSH keys and interactive sessions.
	`CREATE TABLE ssh_keys (
		id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),
		fingerprint TEXT NOT NULL UNIQUE, type TEXT NOT NULL, key TEXT NOT NULL, comment TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL, last_used INTEGER);
	CREATE INDEX ssh_keys_user ON ssh_keys(user_id);
	CREATE TABLE sessions (
		id TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), kind TEXT NOT NULL,
		pool TEXT NOT NULL, node TEXT NOT NULL, cpus INTEGER NOT NULL, memory INTEGER NOT NULL,
		state TEXT NOT NULL, remote TEXT NOT NULL DEFAULT '', started_at INTEGER NOT NULL, last_activity INTEGER NOT NULL,
		ended_at INTEGER, end_reason TEXT NOT NULL DEFAULT '', bytes_in INTEGER NOT NULL DEFAULT 0,
		bytes_out INTEGER NOT NULL DEFAULT 0, connections INTEGER NOT NULL DEFAULT 0);
	CREATE INDEX sessions_active ON sessions(state) WHERE state != 'ended';
	CREATE INDEX sessions_user ON sessions(user_id, started_at);`,
	// 3: passwords (argon2id, PHC string format), for password logins.
	`ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';`,
	// 4: browser logins: the hash of the cookie, and the XSRF token of the
	// login.
	`CREATE TABLE web_sessions (
		hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), xsrf TEXT NOT NULL,
		created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
	CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);`,
	// 5: pool events, when each node went (for usage; gone nodes of
	// earlier versions went at their last contact), and indexes that find
	// the attempts and sessions of a usage window without reading them all.
	`CREATE TABLE pool_events (
		id INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL,
		nodes TEXT NOT NULL DEFAULT '', message TEXT NOT NULL);
	CREATE INDEX pool_events_pool ON pool_events(pool, id);
	ALTER TABLE nodes ADD COLUMN gone_at INTEGER;
	UPDATE nodes SET gone_at = COALESCE(last_seen, created_at) WHERE state = 'gone';
	CREATE INDEX attempts_finished ON attempts(finished_at);
	CREATE INDEX sessions_ended ON sessions(ended_at);`,
	// API tokens' names, scopes, expiry, revocation and last use (tokens
	// made before keep every scope and no expiry); disabled users; the
	// audit log, which triggers keep append-only (see audit.go).
	`ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
	ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,jobs,sessions,admin';
	ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
	ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;
	ALTER TABLE tokens ADD COLUMN last_used INTEGER;
	CREATE INDEX tokens_user ON tokens(user_id);
	ALTER TABLE users ADD COLUMN disabled_at INTEGER;
	CREATE TABLE audit (
		id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
		target TEXT NOT NULL DEFAULT '', remote TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
	CREATE INDEX audit_at ON audit(at);
	CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
	CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;`,
	// users' email addresses (lower case; '' for none), which single
	// sign-on maps a verified email to.
	`ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
	CREATE UNIQUE INDEX users_email ON users(email) WHERE email != '';`,
	// teams and their members, limits of teams and of users (JSON of
	// dspool.Limits), and the team each job runs on behalf of.
	`CREATE TABLE teams (
		id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, limits TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL);
	CREATE TABLE team_members (
		team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE, user_id INTEGER NOT NULL REFERENCES users(id),
		maintainer INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (team_id, user_id));
	CREATE INDEX team_members_user ON team_members(user_id);
	CREATE TABLE user_limits (user_id INTEGER PRIMARY KEY REFERENCES users(id), limits TEXT NOT NULL);
	ALTER TABLE jobs ADD COLUMN team TEXT NOT NULL DEFAULT '';`,
	// secrets: values sealed under the key-encryption key (only the
	// ciphertext, its nonce and the key's id are here), owned by a user or
	// a team; and the secrets each job asks for, by name.
	`CREATE TABLE secrets (
		id INTEGER PRIMARY KEY AUTOINCREMENT, owner_kind TEXT NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL,
		key_id TEXT NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
		session_env TEXT NOT NULL DEFAULT '', session_file INTEGER NOT NULL DEFAULT 0,
		created_by TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_read_at INTEGER,
		UNIQUE (owner_kind, owner, name));
	ALTER TABLE jobs ADD COLUMN secrets TEXT NOT NULL DEFAULT '';`,
	// node credentials: the next one an agent rotated to (the current one
	// stays good until the next is first used), and when an admin revoked
	// them.
	`ALTER TABLE nodes ADD COLUMN next_cred_hash BLOB;
	ALTER TABLE nodes ADD COLUMN cred_revoked_at INTEGER;
	CREATE UNIQUE INDEX nodes_next_cred ON nodes(next_cred_hash) WHERE next_cred_hash IS NOT NULL;`,
	// the accounts and groups on each node's machine in the store's uid
	// range that are not its users' own (JSON of []dspool.HostAccount).
	`ALTER TABLE nodes ADD COLUMN accounts TEXT NOT NULL DEFAULT '[]';`,
	// join tokens' expiry, revocation and maker (tokens made before never
	// expire); when a node was removed, after which its credential is
	// refused (nodes gone before were all removed).
	`ALTER TABLE join_tokens ADD COLUMN expires_at INTEGER;
	ALTER TABLE join_tokens ADD COLUMN revoked_at INTEGER;
	ALTER TABLE join_tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
	CREATE INDEX join_tokens_pool ON join_tokens(pool);
	ALTER TABLE nodes ADD COLUMN removed_at INTEGER;
	UPDATE nodes SET removed_at = COALESCE(gone_at, last_seen, created_at) WHERE state = 'gone';`,
	// retention (retention.go): indexes that find what ended before a
	// time, and an audit log whose oldest entries may go below a mark that
	// only moves forward.
	retentionMigration,
	// nodes by name: a node is looked up by id or name at each heartbeat,
	// and without it every lookup read every node.
	`CREATE INDEX nodes_name ON nodes(name);`,
	// job arrays (their tasks are jobs with the array's id and their
	// index; the array's id is its first task's), what jobs wait for
	// (--after), and jobs held by their users.
	arraysMigration,
	// recurring jobs (schedules.go), and the schedule and slot each job
	// ran for.
	schedulesMigration,
	// join tokens the autoscaler makes for the machines it asks a provider
	// for: each joins one node, once (used_at), and expires soon.
	`ALTER TABLE join_tokens ADD COLUMN single_use INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE join_tokens ADD COLUMN used_at INTEGER;`,
	// images (docs/decisions/0026-images.md): the image a job asked for.
	`ALTER TABLE jobs ADD COLUMN image TEXT NOT NULL DEFAULT '';`,
	// GPUs by model and memory (docs/decisions/0032-gpus-and-session-sizes.md).
	`ALTER TABLE jobs ADD COLUMN gpu_type TEXT NOT NULL DEFAULT '';
	ALTER TABLE jobs ADD COLUMN gpu_memory INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE sessions ADD COLUMN size TEXT NOT NULL DEFAULT '';
	ALTER TABLE sessions ADD COLUMN gpu_indices TEXT NOT NULL DEFAULT '';
	ALTER TABLE sessions ADD COLUMN ends_at INTEGER;`,
	// preemption (docs/decisions/0034-preemption.md).
	`ALTER TABLE jobs ADD COLUMN preemptible INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN preempt_requested INTEGER NOT NULL DEFAULT 0;`,
	// the leader's lease among control planes on one database (lease.go).
	leasesMigration,
}

const schema = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
	id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, uid INTEGER NOT NULL UNIQUE,
	gid INTEGER NOT NULL, admin INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE tokens (
	id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
	hash BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL);
CREATE TABLE pools (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE join_tokens (hash BLOB PRIMARY KEY, pool TEXT NOT NULL REFERENCES pools(name), created_at INTEGER NOT NULL);
CREATE TABLE nodes (
	id TEXT PRIMARY KEY, name TEXT NOT NULL, pool TEXT NOT NULL, state TEXT NOT NULL,
	message TEXT NOT NULL DEFAULT '', inventory TEXT NOT NULL DEFAULT '{}', labels TEXT NOT NULL DEFAULT '{}',
	version TEXT NOT NULL DEFAULT '', cred_hash BLOB NOT NULL UNIQUE,
	created_at INTEGER NOT NULL, last_seen INTEGER);
CREATE TABLE jobs (
	id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),
	name TEXT NOT NULL, pool TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
	exit_code INTEGER, message TEXT NOT NULL DEFAULT '', attempt INTEGER NOT NULL, node TEXT NOT NULL DEFAULT '',
	cpus INTEGER NOT NULL, memory INTEGER NOT NULL, gpus INTEGER NOT NULL, gpu_indices TEXT NOT NULL DEFAULT '',
	time_limit INTEGER NOT NULL, retries INTEGER NOT NULL, priority INTEGER NOT NULL,
	env TEXT NOT NULL, workdir TEXT NOT NULL, command TEXT NOT NULL,
	cancel_requested INTEGER NOT NULL DEFAULT 0, idem_key TEXT NOT NULL DEFAULT '',
	submitted_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER);
CREATE UNIQUE INDEX jobs_idem ON jobs(user_id, idem_key) WHERE idem_key != '';
CREATE INDEX jobs_queue ON jobs(state, priority DESC, id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_user ON jobs(user_id, id);
CREATE INDEX jobs_node ON jobs(node) WHERE state = 'running';
CREATE TABLE attempts (
	job_id INTEGER NOT NULL REFERENCES jobs(id), number INTEGER NOT NULL, node TEXT NOT NULL,
	gpu_indices TEXT NOT NULL DEFAULT '', started_at INTEGER, finished_at INTEGER,
	exit_code INTEGER, reason TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, number));
`

// Open opens (creating if needed) the store at where: an SQLite file, or a
// PostgreSQL database named by a postgres:// URL. A file or database that
// is not a dspool store, or one from a newer version, is refused with an
// error that names it.
func Open(ctx context.Context, where string, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.UIDBase == 0 {
		opts.UIDBase = 20000
	}
	if IsPostgres(where) {
		return openPostgres(ctx, where, opts)
	}
	path := where
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	if opts.Reserve == 0 {
		opts.Reserve = DefaultReserve
	}
	db := &DB{w: w, r: r, path: path, submit: make(chan *submitReq, 1024), done: make(chan struct{}), now: opts.Now,
		room: newRoom(path, max(opts.Reserve, 0))}
	if err := db.migrate(ctx, opts.UIDBase); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	if err := db.room.take(); isFull(err) {
		db.room.short = fmt.Sprintf("the store's disk (%s) has no room for its reserve of %d MiB", filepath.Dir(path), db.room.size>>20)
	} else if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store %s: reserve room on its disk: %w", path, err)
	}
	go db.submitLoop()
	return db, nil
}

func (db *DB) migrate(ctx context.Context, uidBase int) error {
	var v int
	if err := db.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version (is this a dspool store?): %w", err)
	}
	switch {
	case v >= 1 && v < schemaVersion:
		var ok string
		if err := db.w.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&ok); err != nil || ok != "ok" {
			return fmt.Errorf("integrity check failed (%s %v): restore it from a backup; dspool will not start on a damaged store", ok, err)
		}
		return db.upgrade(ctx, v)
	case v == schemaVersion:
		var ok string
		if err := db.w.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&ok); err != nil || ok != "ok" {
			return fmt.Errorf("integrity check failed (%s %v): restore it from a backup; dspool will not start on a damaged store", ok, err)
		}
		return nil
	case v > schemaVersion:
		return fmt.Errorf("schema version %d is newer than this dspool understands (%d): upgrade dspool", v, schemaVersion)
	}
	var tables int
	if err := db.w.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&tables); err != nil {
		return err
	}
	if tables > 0 {
		return errors.New("has tables but no dspool schema version: it is not a dspool store")
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta(key, value) VALUES ('uid_base', ?)", fmt.Sprint(uidBase)); err != nil {
		return err
	}
	if err := migrate(ctx, tx, 1); err != nil {
		return err
	}
	return tx.Commit()
}

// upgrade brings a store of version v to schemaVersion in one transaction.
func (db *DB) upgrade(ctx context.Context, v int) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := migrate(ctx, tx, v); err != nil {
		return err
	}
	return tx.Commit()
}

func migrate(ctx context.Context, tx *sql.Tx, from int) error {
	for v := from; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("upgrade the schema to version %d: %w", v+1, err)
		}
	}
	_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion))
	return err
}

// Close stops the writer and closes the file.
func (db *DB) Close() error {
	close(db.done)
	err := db.w.Close()
	if err2 := db.r.Close(); err == nil {
		err = err2
	}
	if db.lw != nil {
		db.lw.Close()
	}
	return err
}

// Path is the store's file.
func (db *DB) Path() string { return db.path }

// tx runs fn in one write transaction. A write that finds the disk full
// gives the store's reserve back and fails with an unavailable error (see
// room.go).
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.written(db.commit(ctx, fn))
}

// exec is one write outside a transaction: in one of its own where the
// store is fenced.
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if db.fence.Load() != 0 {
		var res sql.Result
		err := db.tx(ctx, func(tx *sql.Tx) error {
			var err error
			res, err = tx.ExecContext(ctx, query, args...)
			return err
		})
		return res, err
	}
	res, err := db.w.ExecContext(ctx, query, args...)
	return res, db.written(err)
}

func (db *DB) commit(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.commitUnfenced(ctx, func(tx *sql.Tx) error {
		if err := db.leading(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// commitUnfenced runs fn in a write transaction whoever leads.
func (db *DB) commitUnfenced(ctx context.Context, fn func(*sql.Tx) error) error {
	return commitOn(ctx, db.w, fn)
}

// commitOn runs fn in a transaction on c.
func commitOn(ctx context.Context, c *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func unixNano(t time.Time) int64 { return t.UnixNano() }

func fromNano(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(0, n.Int64).UTC()
	return &t
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

// notFoundHint says where to look instead, per kind of thing.
var notFoundHint = map[string]string{
	"job":      "list yours with `dspool job list`",
	"pool":     "list pools with `dspool pool list`",
	"node":     "list nodes with `dspool node list`",
	"user":     "list users with `dspool user list`",
	"key":      "list keys with `dspool key list`",
	"session":  "list sessions with `dspool session list`",
	"team":     "list teams with `dspool team list`",
	"secret":   "list yours with `dspool secret list`",
	"schedule": "list yours with `dspool schedule list`",
}

func notFound(what string, id any) error {
	return dspool.Errorf(dspool.ENotFound, "%s %v not found: %s", what, id, notFoundHint[what])
}

// queryAll runs a query and scans every row with scan. The result is never
// nil, so that an empty list reads [] in JSON.
func queryAll[T any](ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
