package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// Who may get in: API tokens with their scopes, expiry and revocation, and
// disabled users. Whether a token may be used now is the server's call (it
// has the clock and the route); the store says what the token is.

const tokenCols = `t.id, u.name, t.name, t.scopes, t.created_at, t.expires_at, t.revoked_at, t.last_used, u.admin`

func scanToken(s scanner) (*dspool.Token, error) {
	var t dspool.Token
	var scopes string
	var created int64
	var expires, revoked, used sql.NullInt64
	var admin bool
	if err := s.Scan(&t.ID, &t.User, &t.Name, &scopes, &created, &expires, &revoked, &used, &admin); err != nil {
		return nil, err
	}
	t.Scopes = dspool.EffectiveScopes(strings.Split(scopes, ","), admin)
	t.CreatedAt = time.Unix(0, created).UTC()
	t.ExpiresAt, t.RevokedAt, t.LastUsed = fromNano(expires), fromNano(revoked), fromNano(used)
	return &t, nil
}

// AddToken stores the hash of a new API token of user userID, with a name,
// its scopes (dspool.Scopes when empty) and when it expires (nil: never).
func (db *DB) AddToken(ctx context.Context, userID int64, hash []byte, name string, scopes []string, expires *time.Time) (*dspool.Token, error) {
	if len(scopes) == 0 {
		scopes = dspool.Scopes
	}
	if err := dspool.CheckScopes("scopes", scopes); err != nil {
		return nil, err
	}
	var t *dspool.Token
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRow(`INSERT INTO tokens (user_id, hash, created_at, name, scopes, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			userID, hash, unixNano(db.now()), name, strings.Join(scopes, ","), nullTime(expires)).Scan(&id); err != nil {
			return fmt.Errorf("create token: %w", err)
		}
		var err error
		t, err = scanToken(tx.QueryRow(`SELECT `+tokenCols+` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?`, id))
		return err
	})
	return t, err
}

// TokenByHash returns the token with this hash and its user, or an
// EUnauthorized error when there is none. It does not judge expiry,
// revocation or a disabled user: the caller does, with its clock.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (*dspool.User, *dspool.Token, error) {
	row := db.r.QueryRowContext(ctx, `SELECT u.id, u.name, u.uid, u.gid, u.admin, u.created_at, u.disabled_at IS NOT NULL, `+tokenCols+`
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, hash)
	var u dspool.User
	var admin int
	var created int64
	var t dspool.Token
	var scopes string
	var tcreated int64
	var expires, revoked, used sql.NullInt64
	err := row.Scan(&u.ID, &u.Name, &u.UID, &u.GID, &admin, &created, &u.Disabled,
		&t.ID, &t.User, &t.Name, &scopes, &tcreated, &expires, &revoked, &used, &admin)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, dspool.Errorf(dspool.EUnauthorized, "token not recognised: it is mistyped, or of another pool; use one this pool made (an admin makes one with `dspool token create --user NAME`)")
	}
	if err != nil {
		return nil, nil, err
	}
	u.Admin = admin != 0
	u.CreatedAt = time.Unix(0, created).UTC()
	t.Scopes = dspool.EffectiveScopes(strings.Split(scopes, ","), u.Admin)
	t.CreatedAt = time.Unix(0, tcreated).UTC()
	t.ExpiresAt, t.RevokedAt, t.LastUsed = fromNano(expires), fromNano(revoked), fromNano(used)
	return &u, &t, nil
}

// Tokens lists the tokens of user (every user's when ""), oldest first.
func (db *DB) Tokens(ctx context.Context, user string) ([]*dspool.Token, error) {
	q := `SELECT ` + tokenCols + ` FROM tokens t JOIN users u ON u.id = t.user_id`
	var args []any
	if user != "" {
		q += ` WHERE u.name = ?`
		args = append(args, user)
	}
	return queryAll(ctx, db.r, scanToken, q+` ORDER BY t.id`, args...)
}

// RevokeToken revokes token id of user (of any user when "") at at, and
// returns it. Revoking a revoked token changes nothing.
func (db *DB) RevokeToken(ctx context.Context, id int64, user string, at time.Time) (*dspool.Token, error) {
	var t *dspool.Token
	err := db.tx(ctx, func(tx *sql.Tx) error {
		q := `SELECT ` + tokenCols + ` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?`
		args := []any{id}
		if user != "" {
			q += ` AND u.name = ?`
			args = append(args, user)
		}
		if _, err := tx.Exec(`UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, unixNano(at), id); err != nil {
			return fmt.Errorf("revoke token %d: %w", id, err)
		}
		var err error
		t, err = scanToken(tx.QueryRow(q, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return dspool.Errorf(dspool.ENotFound, "token %d not found: list yours with `dspool token list`", id)
		}
		return err
	})
	return t, err
}

// TouchToken records that token id was used at at.
func (db *DB) TouchToken(ctx context.Context, id int64, at time.Time) error {
	_, err := db.exec(ctx, `UPDATE tokens SET last_used = ? WHERE id = ?`, unixNano(at), id)
	return err
}

// SetUserDisabled disables (at at) or enables user name and returns the
// user. Their tokens, keys and web logins stay, refused while the user is
// disabled (a web login says why); enabling ends the web logins, so that
// the user logs in again.
func (db *DB) SetUserDisabled(ctx context.Context, name string, disabled bool, at time.Time) (*dspool.User, error) {
	var u *dspool.User
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if disabled {
			_, err = tx.Exec(`UPDATE users SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL`, unixNano(at), name)
		} else {
			_, err = tx.Exec(`UPDATE users SET disabled_at = NULL WHERE name = ?`, name)
		}
		if err != nil {
			return fmt.Errorf("disable user %s: %w", name, err)
		}
		u, err = scanUser(tx.QueryRow(`SELECT `+userCols+` FROM users WHERE name = ?`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("user", name)
		}
		if err != nil {
			return err
		}
		if !disabled {
			_, err = tx.Exec(`DELETE FROM web_sessions WHERE user_id = ?`, u.ID)
		}
		return err
	})
	return u, err
}
