package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/dspool/dspool"
)

func scanUser(s scanner) (*dspool.User, error) {
	var u dspool.User
	var created sql.NullInt64
	var admin int
	if err := s.Scan(&u.ID, &u.Name, &u.UID, &u.GID, &admin, &created, &u.Disabled); err != nil {
		return nil, err
	}
	u.Admin = admin != 0
	u.CreatedAt = *fromNano(created)
	return &u, nil
}

const userCols = `id, name, uid, gid, admin, created_at, disabled_at IS NOT NULL`

// CreateUser creates a user with the next free uid/gid (the same number for
// both): one that no user has and that no account or group on a node holds
// (dspool.FreeUID). A taken name is an EConflict error.
func (db *DB) CreateUser(ctx context.Context, name string, admin bool) (*dspool.User, error) {
	return db.CreateUserAvoiding(ctx, name, admin, nil)
}

// CreateUserAvoiding is CreateUser that also avoids the ids of host, the
// accounts of a machine that has no node yet (the one `dspool up` runs on,
// before its agents join).
func (db *DB) CreateUserAvoiding(ctx context.Context, name string, admin bool, host []dspool.HostAccount) (*dspool.User, error) {
	if err := dspool.ValidateName("name", name); err != nil {
		return nil, err
	}
	// Another control plane on the same database may take the uid picked
	// here before this one commits: its unique index refuses the second,
	// which picks again, after a pause that grows and differs between
	// writers, so that writers racing for the next uid take turns.
	for try := 0; ; try++ {
		u, err := db.createUser(ctx, name, admin, host)
		if !errors.Is(err, errUIDTaken) || try == 50 {
			return u, err
		}
		pause := time.Duration(rand.Int64N(int64(min(try+1, 20)) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// errUIDTaken is a new user's uid taken by another writer meanwhile.
var errUIDTaken = errors.New("the uid picked for the new user was taken meanwhile")

func (db *DB) createUser(ctx context.Context, name string, admin bool, host []dspool.HostAccount) (*dspool.User, error) {
	var u *dspool.User
	err := db.tx(ctx, func(tx *sql.Tx) error {
		uid, err := freeUID(tx, name, host)
		if err != nil {
			return err
		}
		a := 0
		if admin {
			a = 1
		}
		_, err = tx.Exec(`INSERT INTO users (name, uid, gid, admin, created_at) VALUES (?, ?, ?, ?, ?)`,
			name, uid, uid, a, unixNano(db.now()))
		if err != nil {
			if isUniqueOn(err, "users", "name") {
				return dspool.Errorf(dspool.EConflict, "user %s already exists", name)
			}
			if isUniqueOn(err, "users", "uid") {
				return errUIDTaken
			}
			return fmt.Errorf("create user: %w", err)
		}
		u, err = scanUser(tx.QueryRow(`SELECT `+userCols+` FROM users WHERE name = ?`, name))
		return err
	})
	return u, err
}

// freeUID picks a new user's uid in tx, past the store's highest.
func freeUID(tx *sql.Tx, name string, host []dspool.HostAccount) (int, error) {
	var base string
	if err := tx.QueryRow(`SELECT value FROM meta WHERE key = 'uid_base'`).Scan(&base); err != nil {
		return 0, err
	}
	b, _ := strconv.Atoi(base)
	var next int
	if err := tx.QueryRow(`SELECT COALESCE(MAX(uid) + 1, ?) FROM users`, b).Scan(&next); err != nil {
		return 0, err
	}
	accts := append([]dspool.HostAccount(nil), host...)
	rows, err := tx.Query(`SELECT accounts FROM nodes WHERE state != 'gone'`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var js string
		var some []dspool.HostAccount
		if err := rows.Scan(&js); err != nil {
			return 0, err
		}
		if json.Unmarshal([]byte(js), &some) == nil {
			accts = append(accts, some...)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var qerr error
	uid := dspool.FreeUID(name, next, accts, func(id int) bool {
		if id < b {
			return true // below the store's range: never given
		}
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM users WHERE uid = ? OR gid = ?`, id, id).Scan(&n); err != nil {
			qerr = err
			return false
		}
		return n > 0
	})
	return uid, qerr
}

// UIDRange is the store's uid range (dspool.NewUIDRange).
func (db *DB) UIDRange(ctx context.Context) (dspool.UIDRange, error) {
	var base string
	var top sql.NullInt64
	err := db.r.QueryRowContext(ctx, `SELECT (SELECT value FROM meta WHERE key = 'uid_base'), (SELECT MAX(uid) FROM users)`).Scan(&base, &top)
	if err != nil {
		return dspool.UIDRange{}, err
	}
	b, _ := strconv.Atoi(base)
	if !top.Valid {
		top.Int64 = int64(b - 1)
	}
	return dspool.NewUIDRange(b, int(top.Int64)), nil
}

// User returns the user called name.
func (db *DB) User(ctx context.Context, name string) (*dspool.User, error) {
	u, err := scanUser(db.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("user", name)
	}
	return u, err
}

// Users lists users by name.
func (db *DB) Users(ctx context.Context) ([]*dspool.User, error) {
	return queryAll(ctx, db.r, scanUser, `SELECT `+userCols+` FROM users ORDER BY name`)
}

// CreateToken stores the hash of a new API token for user.
func (db *DB) CreateToken(ctx context.Context, userID int64, hash []byte) (*dspool.Token, error) {
	var t dspool.Token
	err := db.tx(ctx, func(tx *sql.Tx) error {
		now := db.now()
		if err := tx.QueryRow(`INSERT INTO tokens (user_id, hash, created_at) VALUES (?, ?, ?) RETURNING id`,
			userID, hash, unixNano(now)).Scan(&t.ID); err != nil {
			return fmt.Errorf("create token: %w", err)
		}
		t.CreatedAt = now.UTC()
		return tx.QueryRow(`SELECT name FROM users WHERE id = ?`, userID).Scan(&t.User)
	})
	return &t, err
}

// UserByToken returns the user owning the token with this hash, or an
// EUnauthorized error.
func (db *DB) UserByToken(ctx context.Context, hash []byte) (*dspool.User, error) {
	u, err := scanUser(db.r.QueryRowContext(ctx, `SELECT u.id, u.name, u.uid, u.gid, u.admin, u.created_at, u.disabled_at IS NOT NULL
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dspool.Errorf(dspool.EUnauthorized, "token not recognised")
	}
	return u, err
}

// SetPassword stores a user's password hash ("" removes the password).
func (db *DB) SetPassword(ctx context.Context, name, hash string) error {
	res, err := db.exec(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("user", name)
	}
	return nil
}

// PasswordHash returns a user's password hash, "" when the user has none.
func (db *DB) PasswordHash(ctx context.Context, name string) (string, error) {
	var h string
	err := db.r.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE name = ?`, name).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("user", name)
	}
	return h, err
}

// UIDBase is the first uid/gid the store gives users, fixed when it was
// created.
func (db *DB) UIDBase(ctx context.Context) (int, error) {
	var v string
	if err := db.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'uid_base'`).Scan(&v); err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// CreateWebSession stores a browser login: the hash of its cookie and its
// XSRF token, valid until expires. A disabled user gets none (an
// EUnauthorized error), however they logged in.
func (db *DB) CreateWebSession(ctx context.Context, userID int64, hash []byte, xsrf string, expires time.Time) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		now := db.now()
		if _, err := tx.Exec(`DELETE FROM web_sessions WHERE expires_at < ?`, unixNano(now)); err != nil {
			return err
		}
		res, err := tx.Exec(`INSERT INTO web_sessions (hash, user_id, xsrf, created_at, expires_at)
			SELECT ?, id, ?, ?, ? FROM users WHERE id = ? AND disabled_at IS NULL`,
			hash, xsrf, unixNano(now), unixNano(expires), userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return dspool.Errorf(dspool.EUnauthorized, "this user is disabled or gone: ask an admin")
		}
		return nil
	})
}

// WebSession returns the user and XSRF token of a browser login, or an
// EUnauthorized error when it is unknown, expired or its user disabled.
func (db *DB) WebSession(ctx context.Context, hash []byte) (*dspool.User, string, error) {
	var xsrf string
	var expires int64
	row := db.r.QueryRowContext(ctx, `SELECT u.id, u.name, u.uid, u.gid, u.admin, u.created_at, w.xsrf, w.expires_at, u.disabled_at IS NOT NULL
		FROM web_sessions w JOIN users u ON u.id = w.user_id WHERE w.hash = ?`, hash)
	var u dspool.User
	var created sql.NullInt64
	var admin int
	if err := row.Scan(&u.ID, &u.Name, &u.UID, &u.GID, &admin, &created, &xsrf, &expires, &u.Disabled); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, "", dspool.Errorf(dspool.EUnauthorized, "your login has ended: log in again")
		}
		return nil, "", err
	}
	if time.Unix(0, expires).Before(db.now()) {
		return nil, "", dspool.Errorf(dspool.EUnauthorized, "your login has expired: log in again")
	}
	if u.Disabled {
		return nil, "", dspool.Errorf(dspool.EUnauthorized, "your account (user %s) is disabled: ask an admin to enable it", u.Name)
	}
	u.Admin = admin != 0
	u.CreatedAt = *fromNano(created)
	return &u, xsrf, nil
}

// DeleteWebSession ends a browser login.
func (db *DB) DeleteWebSession(ctx context.Context, hash []byte) error {
	_, err := db.exec(ctx, `DELETE FROM web_sessions WHERE hash = ?`, hash)
	return err
}

// ClaimShare records id as the share of this store where it has none yet
// (a store made before stores kept it, or a new one), and returns the id
// the store keeps, with whether it had one before. Control planes of one
// store claim the same share.
func (db *DB) ClaimShare(ctx context.Context, id string) (string, bool, error) {
	var kept string
	had := true
	err := db.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`SELECT value FROM meta WHERE key = 'share_id'`).Scan(&kept)
		if errors.Is(err, sql.ErrNoRows) {
			had, kept = false, id
			_, err = tx.Exec(`INSERT INTO meta (key, value) VALUES ('share_id', ?)`, id)
		}
		return err
	})
	return kept, had, err
}

// SetShare replaces the share id the store keeps ("": none).
func (db *DB) SetShare(ctx context.Context, id string) error {
	if id == "" {
		_, err := db.w.ExecContext(ctx, `DELETE FROM meta WHERE key = 'share_id'`)
		return err
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('share_id', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, id)
	return err
}
