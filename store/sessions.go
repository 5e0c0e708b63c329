package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// MaxKeysPerUser bounds the SSH keys one user may register.
const MaxKeysPerUser = 100

const keyCols = `k.id, u.name, k.type, k.fingerprint, k.comment, k.key, k.created_at, k.last_used`

func scanKey(s scanner) (*dspool.SSHKey, error) {
	var k dspool.SSHKey
	var created, used sql.NullInt64
	if err := s.Scan(&k.ID, &k.User, &k.Type, &k.Fingerprint, &k.Comment, &k.Key, &created, &used); err != nil {
		return nil, err
	}
	k.CreatedAt = *fromNano(created)
	k.LastUsed = fromNano(used)
	return &k, nil
}

// AddKey registers k for k.User. A key logs in exactly one user: a key that
// is already registered is an EConflict error.
func (db *DB) AddKey(ctx context.Context, k *dspool.SSHKey) (*dspool.SSHKey, error) {
	var out *dspool.SSHKey
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		if err := tx.QueryRow(`SELECT id FROM users WHERE name = ?`, k.User).Scan(&uid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("user", k.User)
			}
			return err
		}
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM ssh_keys WHERE user_id = ?`, uid).Scan(&n); err != nil {
			return err
		}
		if n >= MaxKeysPerUser {
			return dspool.Errorf(dspool.EConflict, "user %s already has %d keys, the most allowed: remove one with `dspool key remove`", k.User, n)
		}
		var id int64
		err := tx.QueryRow(`INSERT INTO ssh_keys (user_id, fingerprint, type, key, comment, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			uid, k.Fingerprint, k.Type, k.Key, k.Comment, unixNano(db.now())).Scan(&id)
		if err != nil {
			if isUnique(err) {
				return dspool.Errorf(dspool.EConflict, "key %s is already registered: a key logs in one user; make a new one with ssh-keygen -t ed25519", k.Fingerprint)
			}
			return fmt.Errorf("add key: %w", err)
		}
		out, err = scanKey(tx.QueryRow(`SELECT `+keyCols+` FROM ssh_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?`, id))
		return err
	})
	return out, err
}

// Keys lists the keys of user (every user's when user is empty).
func (db *DB) Keys(ctx context.Context, user string) ([]*dspool.SSHKey, error) {
	q := `SELECT ` + keyCols + ` FROM ssh_keys k JOIN users u ON u.id = k.user_id`
	var args []any
	if user != "" {
		q += ` WHERE u.name = ?`
		args = append(args, user)
	}
	return queryAll(ctx, db.r, scanKey, q+` ORDER BY u.name, k.id`, args...)
}

// KeyByFingerprint returns the key with this fingerprint, with its user.
func (db *DB) KeyByFingerprint(ctx context.Context, fp string) (*dspool.SSHKey, error) {
	k, err := scanKey(db.r.QueryRowContext(ctx, `SELECT `+keyCols+` FROM ssh_keys k JOIN users u ON u.id = k.user_id WHERE k.fingerprint = ?`, fp))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("key", fp)
	}
	return k, err
}

// RemoveKey removes user's key given by id or fingerprint. user empty means
// any user's (for admins).
func (db *DB) RemoveKey(ctx context.Context, user, key string) (*dspool.SSHKey, error) {
	var out *dspool.SSHKey
	err := db.tx(ctx, func(tx *sql.Tx) error {
		q := `SELECT ` + keyCols + ` FROM ssh_keys k JOIN users u ON u.id = k.user_id WHERE (CAST(k.id AS TEXT) = ? OR k.fingerprint = ?)`
		args := []any{key, key}
		if user != "" {
			q += ` AND u.name = ?`
			args = append(args, user)
		}
		k, err := scanKey(tx.QueryRow(q, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("key", key)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM ssh_keys WHERE id = ?`, k.ID); err != nil {
			return err
		}
		out = k
		return nil
	})
	return out, err
}

// TouchKey records that a key was used to log in.
func (db *DB) TouchKey(ctx context.Context, id int64, at time.Time) error {
	_, err := db.exec(ctx, `UPDATE ssh_keys SET last_used = ? WHERE id = ?`, unixNano(at), id)
	return err
}

const sessionCols = `s.id, u.name, s.kind, s.pool, s.node, COALESCE(n.name, ''), s.cpus, s.memory, s.state, s.remote,
	s.connections, s.started_at, s.last_activity, s.ended_at, s.end_reason, s.bytes_in, s.bytes_out, s.size, s.gpu_indices, s.ends_at`

const sessionFrom = ` FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN nodes n ON n.id = s.node`

func scanSession(s scanner) (*dspool.Session, error) {
	var x dspool.Session
	var started, last, ended, ends sql.NullInt64
	var gpus string
	if err := s.Scan(&x.ID, &x.User, &x.Kind, &x.Pool, &x.Node, &x.NodeName, &x.CPUs, &x.Memory, &x.State, &x.Remote,
		&x.Connections, &started, &last, &ended, &x.EndReason, &x.BytesIn, &x.BytesOut, &x.Size, &gpus, &ends); err != nil {
		return nil, err
	}
	x.GPUIndices = parseInts(gpus)
	x.EndsAt = fromNano(ends)
	x.StartedAt = *fromNano(started)
	x.LastActivity = *fromNano(last)
	x.EndedAt = fromNano(ended)
	return &x, nil
}

// CreateSession records a new session.
func (db *DB) CreateSession(ctx context.Context, s *dspool.Session) error {
	var ends any
	if s.EndsAt != nil {
		ends = unixNano(*s.EndsAt)
	}
	_, err := db.exec(ctx, `INSERT INTO sessions (id, user_id, kind, pool, node, cpus, memory, state, remote,
		started_at, last_activity, connections, size, gpu_indices, ends_at) SELECT ?, id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM users WHERE name = ?`,
		s.ID, s.Kind, s.Pool, s.Node, s.CPUs, s.Memory, s.State, s.Remote,
		unixNano(s.StartedAt), unixNano(s.LastActivity), s.Connections, s.Size, formatInts(s.GPUIndices), ends, s.User)
	if err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	return nil
}

// SessionActivity is what changed in a live session since it was recorded.
type SessionActivity struct {
	ID           string
	LastActivity time.Time
	BytesIn      int64
	BytesOut     int64
	Connections  int
}

// RecordActivity writes the counters of live sessions in one transaction.
func (db *DB) RecordActivity(ctx context.Context, acts []SessionActivity) error {
	if len(acts) == 0 {
		return nil
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		for _, a := range acts {
			if _, err := tx.Exec(`UPDATE sessions SET last_activity = ?, bytes_in = ?, bytes_out = ?, connections = ? WHERE id = ? AND state != 'ended'`,
				unixNano(a.LastActivity), a.BytesIn, a.BytesOut, a.Connections, a.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// EndSession marks a session ended with its final counters.
func (db *DB) EndSession(ctx context.Context, a SessionActivity, reason string, at time.Time) error {
	_, err := db.exec(ctx, `UPDATE sessions SET state = 'ended', ended_at = ?, end_reason = ?, last_activity = ?,
		bytes_in = ?, bytes_out = ?, connections = 0 WHERE id = ? AND state != 'ended'`,
		unixNano(at), reason, unixNano(a.LastActivity), a.BytesIn, a.BytesOut, a.ID)
	return err
}

// SessionFilter selects sessions.
type SessionFilter struct {
	User   string // empty: every user's
	Active bool   // only those not ended
	Limit  int    // 0: 1000
	// Before selects, for SessionPage, the sessions made before this
	// cursor (0: all).
	Before int64
}

// Sessions lists sessions, newest first.
func (db *DB) Sessions(ctx context.Context, f SessionFilter) ([]*dspool.Session, error) {
	q := `SELECT ` + sessionCols + sessionFrom + ` WHERE 1=1`
	var args []any
	if f.User != "" {
		q += ` AND u.name = ?`
		args = append(args, f.User)
	}
	if f.Active {
		q += ` AND s.state != 'ended'`
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	q += ` ORDER BY s.started_at DESC LIMIT ?`
	args = append(args, f.Limit)
	return queryAll(ctx, db.r, scanSession, q, args...)
}

// Session returns one session.
func (db *DB) Session(ctx context.Context, id string) (*dspool.Session, error) {
	s, err := scanSession(db.r.QueryRowContext(ctx, `SELECT `+sessionCols+sessionFrom+` WHERE s.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("session", id)
	}
	return s, err
}

// NodeLoad is what running attempts hold on a node.
type NodeLoad struct {
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	GPUs   []int
}

// RunningLoad sums what running attempts hold, by node.
func (db *DB) RunningLoad(ctx context.Context) (map[string]NodeLoad, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT node, cpus, memory, gpu_indices FROM jobs WHERE state = 'running'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]NodeLoad{}
	for rows.Next() {
		var node, gpus string
		var cpus dspool.MilliCPU
		var mem dspool.Bytes
		if err := rows.Scan(&node, &cpus, &mem, &gpus); err != nil {
			return nil, err
		}
		l := out[node]
		l.CPUs += cpus
		l.Memory += mem
		l.GPUs = append(l.GPUs, parseInts(gpus)...)
		out[node] = l
	}
	return out, rows.Err()
}
