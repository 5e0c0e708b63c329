package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL (docs/decisions/0037-postgresql-store.md) runs the same
// statements as SQLite: they are written in the SQL both understand, with
// SQLite's ? placeholders, which the connection below numbers for
// PostgreSQL. The few that differ are chosen by db.sql. The schema is
// written apart, for PostgreSQL's types, at the version SQLite's
// migrations reach; a test compares the two.

// pgSchemaVersion is the schema version pgSchema is at. A migration after
// it is written for both stores: migrations for SQLite, pgMigrations for
// PostgreSQL.
const pgSchemaVersion = 20

// pgMigrations[i] upgrades a PostgreSQL store from version
// pgSchemaVersion+i to pgSchemaVersion+i+1.
var pgMigrations = []string{
	// 21: the leader's lease among control planes (lease.go).
	leasesMigration,
}

// IsPostgres says whether where names a PostgreSQL database (a postgres://
// or postgresql:// URL) rather than an SQLite file.
func IsPostgres(where string) bool {
	return strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://")
}

// Redact is where with any password in it replaced, for logs and errors.
func Redact(where string) string {
	if !IsPostgres(where) {
		return where
	}
	u, err := url.Parse(where)
	if err != nil {
		return "postgres://…"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func openPostgres(ctx context.Context, where string, opts Options) (*DB, error) {
	cfg, err := pgx.ParseConfig(where)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", Redact(where), err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	// Every statement of the store names its table unqualified, and times
	// are nanoseconds in BIGINTs: neither depends on the session's zone.
	cfg.RuntimeParams["application_name"] = "dspool"
	w := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	// One writer connection, as with SQLite: a write's read-then-write
	// runs alone, and a batch of submissions is one commit.
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	lw := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	lw.SetMaxOpenConns(1)
	db := &DB{w: w, r: r, lw: lw, path: "", pg: true, submit: make(chan *submitReq, 1024), done: make(chan struct{}), now: opts.Now,
		room: newRoom("", 0)}
	if err := db.migratePostgres(ctx, opts.UIDBase); err != nil {
		w.Close()
		r.Close()
		lw.Close()
		return nil, fmt.Errorf("store %s: %w", Redact(where), err)
	}
	go db.submitLoop()
	return db, nil
}

// migratePostgres makes the schema of a new database, or upgrades an older
// one, under an advisory lock, so that control planes starting together
// on one database do it once.
func (db *DB) migratePostgres(ctx context.Context, uidBase int) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, pgMigrateLock); err != nil {
		return fmt.Errorf("lock the schema: %w", err)
	}
	var metaTable sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass('meta')::text`).Scan(&metaTable); err != nil {
		return err
	}
	v := 0
	if metaTable.Valid {
		var s string
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&s)
		if errors.Is(err, sql.ErrNoRows) {
			return errors.New("has a table meta but no dspool schema version: it is not a dspool store")
		}
		if err != nil {
			return err
		}
		if v, err = strconv.Atoi(s); err != nil {
			return fmt.Errorf("schema version %q: %w", s, err)
		}
	} else {
		var tables int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&tables); err != nil {
			return err
		}
		if tables > 0 {
			return errors.New("has tables but no dspool schema: give dspool a database of its own")
		}
	}
	last := pgSchemaVersion + len(pgMigrations)
	switch {
	case v > last:
		return fmt.Errorf("schema version %d is newer than this dspool understands (%d): upgrade dspool", v, last)
	case v == last:
		return nil
	case v == 0:
		if _, err := tx.ExecContext(ctx, pgSchema); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('uid_base', ?), ('schema_version', ?)`,
			fmt.Sprint(uidBase), fmt.Sprint(pgSchemaVersion)); err != nil {
			return err
		}
		v = pgSchemaVersion
	}
	for ; v < last; v++ {
		if _, err := tx.ExecContext(ctx, pgMigrations[v-pgSchemaVersion]); err != nil {
			return fmt.Errorf("upgrade the schema to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'schema_version'`, fmt.Sprint(last)); err != nil {
		return err
	}
	return tx.Commit()
}

// pgMigrateLock is the advisory lock that migrations hold ("dspool" in
// ASCII).
const pgMigrateLock = 0x647370_6f6f6c

// pgConnector makes connections that run the store's statements.
type pgConnector struct{ driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{conn.(*stdlib.Conn)}, nil
}

// pgConn numbers a statement's placeholders, and passes booleans as the
// integers the schema keeps them in, as SQLite does.
type pgConn struct{ *stdlib.Conn }

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(numberPlaceholders(query))
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, numberPlaceholders(query))
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, numberPlaceholders(query), args)
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, numberPlaceholders(query), args)
}

func (c *pgConn) CheckNamedValue(v *driver.NamedValue) error {
	if b, ok := v.Value.(bool); ok {
		v.Value = boolInt(b)
	}
	return c.Conn.CheckNamedValue(v)
}

// numberPlaceholders turns SQLite's ? and ?N placeholders into
// PostgreSQL's $N, leaving quoted text, quoted names and comments as they
// are.
func numberPlaceholders(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(q[i+1:], c)
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+2])
			i += j + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 {
				b.WriteString(q[i+1 : j])
				i = j - 1
			} else {
				n++
				b.WriteString(strconv.Itoa(n))
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isUnique says whether err is a write refused by a unique index.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// Postgres says whether the store is a PostgreSQL database.
func (db *DB) Postgres() bool { return db.pg }

// isUniqueOn says whether err is a write refused by the unique index of
// table's column.
func isUniqueOn(err error, table, column string) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" && pe.ConstraintName == table+"_"+column+"_key"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: "+table+"."+column)
}

// sql picks the statement for the store's database: lite for SQLite, pg
// for PostgreSQL.
func (db *DB) sql(lite, pg string) string {
	if db.pg {
		return pg
	}
	return lite
}

// pgSchema is SQLite's schema at pgSchemaVersion, in PostgreSQL's types:
// integers are BIGINT (times are nanoseconds), blobs BYTEA, and the rowid
// that SQLite gives every table is a column where a query uses it.
const pgSchema = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE, uid BIGINT NOT NULL UNIQUE,
	gid BIGINT NOT NULL, admin BIGINT NOT NULL, created_at BIGINT NOT NULL, password_hash TEXT NOT NULL DEFAULT '',
	disabled_at BIGINT, email TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX users_email ON users(email) WHERE email != '';
CREATE TABLE tokens (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),
	hash BYTEA NOT NULL UNIQUE, created_at BIGINT NOT NULL, name TEXT NOT NULL DEFAULT '',
	scopes TEXT NOT NULL DEFAULT 'read,jobs,sessions,admin', expires_at BIGINT, revoked_at BIGINT, last_used BIGINT);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE pools (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE join_tokens (
	rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
	hash BYTEA PRIMARY KEY, pool TEXT NOT NULL REFERENCES pools(name), created_at BIGINT NOT NULL,
	expires_at BIGINT, revoked_at BIGINT, created_by TEXT NOT NULL DEFAULT '', single_use BIGINT NOT NULL DEFAULT 0, used_at BIGINT);
CREATE INDEX join_tokens_pool ON join_tokens(pool);
CREATE TABLE nodes (
	id TEXT PRIMARY KEY, name TEXT NOT NULL, pool TEXT NOT NULL, state TEXT NOT NULL,
	message TEXT NOT NULL DEFAULT '', inventory TEXT NOT NULL DEFAULT '{}', labels TEXT NOT NULL DEFAULT '{}',
	version TEXT NOT NULL DEFAULT '', cred_hash BYTEA NOT NULL UNIQUE,
	created_at BIGINT NOT NULL, last_seen BIGINT, gone_at BIGINT, next_cred_hash BYTEA, cred_revoked_at BIGINT,
	accounts TEXT NOT NULL DEFAULT '[]', removed_at BIGINT);
CREATE INDEX nodes_name ON nodes(name);
CREATE UNIQUE INDEX nodes_next_cred ON nodes(next_cred_hash) WHERE next_cred_hash IS NOT NULL;
CREATE TABLE jobs (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),
	name TEXT NOT NULL, pool TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
	exit_code BIGINT, message TEXT NOT NULL DEFAULT '', attempt BIGINT NOT NULL, node TEXT NOT NULL DEFAULT '',
	cpus BIGINT NOT NULL, memory BIGINT NOT NULL, gpus BIGINT NOT NULL, gpu_indices TEXT NOT NULL DEFAULT '',
	time_limit BIGINT NOT NULL, retries BIGINT NOT NULL, priority BIGINT NOT NULL,
	env TEXT NOT NULL, workdir TEXT NOT NULL, command TEXT NOT NULL,
	cancel_requested BIGINT NOT NULL DEFAULT 0, idem_key TEXT NOT NULL DEFAULT '',
	submitted_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT, team TEXT NOT NULL DEFAULT '',
	secrets TEXT NOT NULL DEFAULT '', array_id BIGINT NOT NULL DEFAULT 0, array_index BIGINT NOT NULL DEFAULT 0,
	deps TEXT NOT NULL DEFAULT '', after_met BIGINT NOT NULL DEFAULT 1, on_hold BIGINT NOT NULL DEFAULT 0,
	parked BIGINT NOT NULL DEFAULT 0, schedule TEXT NOT NULL DEFAULT '', slot BIGINT, image TEXT NOT NULL DEFAULT '',
	gpu_type TEXT NOT NULL DEFAULT '', gpu_memory BIGINT NOT NULL DEFAULT 0, preemptible BIGINT NOT NULL DEFAULT 0,
	preemptions BIGINT NOT NULL DEFAULT 0, preempt_requested BIGINT NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX jobs_idem ON jobs(user_id, idem_key) WHERE idem_key != '';
CREATE INDEX jobs_queue ON jobs(state, priority DESC, id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_user ON jobs(user_id, id);
CREATE INDEX jobs_node ON jobs(node) WHERE state = 'running';
CREATE INDEX jobs_active ON jobs(id) WHERE state IN ('queued', 'running') AND parked = 0;
CREATE INDEX jobs_array ON jobs(array_id, id) WHERE array_id != 0;
CREATE INDEX jobs_array_state ON jobs(array_id, state, parked, array_index) WHERE array_id != 0;
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_heads ON jobs(user_id, id) WHERE array_id = 0 OR array_id = id;
CREATE INDEX jobs_heads_all ON jobs(id) WHERE array_id = 0 OR array_id = id;
CREATE INDEX jobs_parked ON jobs(array_id, id) WHERE parked = 1;
CREATE INDEX jobs_schedule ON jobs(user_id, schedule, id) WHERE schedule != '';
CREATE TABLE attempts (
	job_id BIGINT NOT NULL REFERENCES jobs(id), number BIGINT NOT NULL, node TEXT NOT NULL,
	gpu_indices TEXT NOT NULL DEFAULT '', started_at BIGINT, finished_at BIGINT,
	exit_code BIGINT, reason TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, number));
CREATE INDEX attempts_finished ON attempts(finished_at);
CREATE TABLE job_arrays (
	id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), indices TEXT NOT NULL,
	tasks BIGINT NOT NULL, max_running BIGINT NOT NULL, created_at BIGINT NOT NULL, parked BIGINT NOT NULL DEFAULT 0);
CREATE INDEX job_arrays_parked ON job_arrays(id) WHERE parked > 0;
CREATE TABLE job_deps (
	waiter BIGINT NOT NULL, waiter_array BIGINT NOT NULL, kind TEXT NOT NULL,
	on_job BIGINT NOT NULL, on_array BIGINT NOT NULL, done BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (waiter, waiter_array, kind, on_job, on_array));
CREATE INDEX job_deps_open ON job_deps(waiter) WHERE done = 0;
CREATE TABLE ssh_keys (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),
	fingerprint TEXT NOT NULL UNIQUE, type TEXT NOT NULL, key TEXT NOT NULL, comment TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL, last_used BIGINT);
CREATE INDEX ssh_keys_user ON ssh_keys(user_id);
CREATE TABLE sessions (
	rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
	id TEXT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), kind TEXT NOT NULL,
	pool TEXT NOT NULL, node TEXT NOT NULL, cpus BIGINT NOT NULL, memory BIGINT NOT NULL,
	state TEXT NOT NULL, remote TEXT NOT NULL DEFAULT '', started_at BIGINT NOT NULL, last_activity BIGINT NOT NULL,
	ended_at BIGINT, end_reason TEXT NOT NULL DEFAULT '', bytes_in BIGINT NOT NULL DEFAULT 0,
	bytes_out BIGINT NOT NULL DEFAULT 0, connections BIGINT NOT NULL DEFAULT 0, size TEXT NOT NULL DEFAULT '',
	gpu_indices TEXT NOT NULL DEFAULT '', ends_at BIGINT);
CREATE INDEX sessions_active ON sessions(state) WHERE state != 'ended';
CREATE INDEX sessions_ended ON sessions(ended_at);
CREATE INDEX sessions_user ON sessions(user_id, started_at);
CREATE TABLE web_sessions (
	hash BYTEA PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), xsrf TEXT NOT NULL,
	created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
CREATE TABLE pool_events (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, pool TEXT NOT NULL, at BIGINT NOT NULL, kind TEXT NOT NULL,
	nodes TEXT NOT NULL DEFAULT '', message TEXT NOT NULL);
CREATE INDEX pool_events_pool ON pool_events(pool, id);
CREATE INDEX pool_events_at ON pool_events(at);
CREATE TABLE teams (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE, limits TEXT NOT NULL DEFAULT '{}',
	created_at BIGINT NOT NULL);
CREATE TABLE team_members (
	team_id BIGINT NOT NULL REFERENCES teams(id) ON DELETE CASCADE, user_id BIGINT NOT NULL REFERENCES users(id),
	maintainer BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (team_id, user_id));
CREATE INDEX team_members_user ON team_members(user_id);
CREATE TABLE user_limits (user_id BIGINT PRIMARY KEY REFERENCES users(id), limits TEXT NOT NULL);
CREATE TABLE secrets (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, owner_kind TEXT NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL,
	key_id TEXT NOT NULL, nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL,
	session_env TEXT NOT NULL DEFAULT '', session_file BIGINT NOT NULL DEFAULT 0,
	created_by TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, last_read_at BIGINT,
	UNIQUE (owner_kind, owner, name));
CREATE TABLE schedules (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), team TEXT NOT NULL DEFAULT '',
	name TEXT NOT NULL, cron TEXT NOT NULL, tz TEXT NOT NULL, overlap TEXT NOT NULL,
	starting_deadline BIGINT NOT NULL DEFAULT 0, job TEXT NOT NULL, paused BIGINT NOT NULL DEFAULT 0,
	last_slot BIGINT, last_job BIGINT, next_slot BIGINT, message TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL, UNIQUE (user_id, name));
CREATE INDEX schedules_next ON schedules(next_slot) WHERE next_slot IS NOT NULL;
CREATE TABLE audit (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '', remote TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE INDEX audit_at ON audit(at);

-- The audit log is append-only: an entry is never changed, and goes only
-- when older than the pruning mark, which only moves forward.
CREATE FUNCTION dspool_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		RAISE EXCEPTION 'the audit log is append-only';
	END IF;
	IF OLD.at >= COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'audit_pruned_before'), 0) THEN
		RAISE EXCEPTION 'the audit log is append-only: only entries older than its retention are pruned';
	END IF;
	RETURN OLD;
END $$;
CREATE TRIGGER audit_guard BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION dspool_audit_guard();
CREATE FUNCTION dspool_audit_mark_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.key = 'audit_pruned_before' AND (TG_OP = 'DELETE' OR NEW.key != OLD.key
		OR CAST(NEW.value AS BIGINT) < CAST(OLD.value AS BIGINT)) THEN
		RAISE EXCEPTION 'the audit log is append-only: its pruning mark only moves forward';
	END IF;
	IF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER audit_mark_guard BEFORE UPDATE OR DELETE ON meta FOR EACH ROW EXECUTE FUNCTION dspool_audit_mark_guard();
`
