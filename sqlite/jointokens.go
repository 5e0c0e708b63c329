package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/dspool/dspool"
)

// Join tokens: a secret an agent presents once to join a pool. Only its
// hash is kept, with when it expires and whether it was revoked; its id
// is the row's.

// CreateJoinToken stores the hash of a join token for pool that does not
// expire, made by the control plane itself.
func (db *DB) CreateJoinToken(ctx context.Context, pool string, hash []byte) error {
	_, err := db.AddJoinToken(ctx, pool, hash, "", nil)
	return err
}

// AddJoinToken stores the hash of a join token for pool, made by by, that
// expires at expires (nil: never).
func (db *DB) AddJoinToken(ctx context.Context, pool string, hash []byte, by string, expires *time.Time) (*dspool.JoinToken, error) {
	t := &dspool.JoinToken{Pool: pool, CreatedAt: db.now().UTC(), CreatedBy: by, ExpiresAt: expires}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO join_tokens (hash, pool, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?)`,
			hash, pool, unixNano(t.CreatedAt), by, nullTime(expires))
		if err != nil {
			return err
		}
		t.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// JoinTokenPool returns the pool a join token with this hash joins, or an
// EUnauthorized error that says why it does not: unknown, revoked or
// expired.
func (db *DB) JoinTokenPool(ctx context.Context, hash []byte) (string, error) {
	var pool string
	var expires, revoked sql.NullInt64
	err := db.r.QueryRowContext(ctx, `SELECT pool, expires_at, revoked_at FROM join_tokens WHERE hash = ?`, hash).Scan(&pool, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", dspool.Errorf(dspool.EUnauthorized, "join token not recognised: print a new one with `dspool pool join-token POOL`")
	}
	if err != nil {
		return "", err
	}
	if revoked.Valid {
		return "", dspool.Errorf(dspool.EUnauthorized, "this join token was revoked at %s: ask an admin for a new one: dspool pool join-token %s",
			fromNano(revoked).Local().Format(time.DateTime), pool)
	}
	if expires.Valid && !db.now().Before(*fromNano(expires)) {
		return "", dspool.Errorf(dspool.EUnauthorized, "this join token expired at %s: ask an admin for a new one: dspool pool join-token %s",
			fromNano(expires).Local().Format(time.DateTime), pool)
	}
	return pool, nil
}

const joinTokenCols = `rowid, pool, created_at, created_by, expires_at, revoked_at`

func scanJoinToken(s scanner) (*dspool.JoinToken, error) {
	var t dspool.JoinToken
	var created, expires, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.Pool, &created, &t.CreatedBy, &expires, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt = *fromNano(created)
	t.ExpiresAt, t.RevokedAt = fromNano(expires), fromNano(revoked)
	return &t, nil
}

// JoinTokens lists the join tokens of pool, oldest first.
func (db *DB) JoinTokens(ctx context.Context, pool string) ([]*dspool.JoinToken, error) {
	return queryAll(ctx, db.r, scanJoinToken, `SELECT `+joinTokenCols+` FROM join_tokens WHERE pool = ? ORDER BY rowid`, pool)
}

// RevokeJoinTokens revokes the join token id of pool, or every one of
// pool's that is not revoked yet when id is 0, and returns those it
// revoked. Revoking a revoked token changes nothing; an unknown id is an
// ENotFound error.
func (db *DB) RevokeJoinTokens(ctx context.Context, pool string, id int64) ([]*dspool.JoinToken, error) {
	var out []*dspool.JoinToken
	err := db.tx(ctx, func(tx *sql.Tx) error {
		now := unixNano(db.now())
		if id != 0 {
			t, err := scanJoinToken(tx.QueryRow(`SELECT `+joinTokenCols+` FROM join_tokens WHERE pool = ? AND rowid = ?`, pool, id))
			if errors.Is(err, sql.ErrNoRows) {
				return dspool.Errorf(dspool.ENotFound, "pool %s has no join token %d: list them with `dspool pool join-token %s --list`", pool, id, pool)
			}
			if err != nil || t.RevokedAt != nil {
				out = []*dspool.JoinToken{}
				return err
			}
		}
		var err error
		out, err = queryAll(ctx, tx, scanJoinToken, `UPDATE join_tokens SET revoked_at = ? WHERE pool = ? AND revoked_at IS NULL
			AND (? = 0 OR rowid = ?) RETURNING `+joinTokenCols, now, pool, id, id)
		return err
	})
	return out, err
}
