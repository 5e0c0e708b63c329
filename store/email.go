package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dspool/dspool"
)

// Users' email addresses, kept beside the columns every user query reads:
// only single sign-on and the admin's user list and create need them.

// UserByEmail returns the user whose recorded email is email (normalized by
// dspool.NormalizeEmail), or an ENotFound error.
func (db *DB) UserByEmail(ctx context.Context, email string) (*dspool.User, error) {
	if email == "" {
		return nil, dspool.Errorf(dspool.ENotFound, "no user has an empty email")
	}
	u, err := scanUser(db.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE email = ?`, email))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dspool.Errorf(dspool.ENotFound, "no user has the email %s: record it with `dspool user email NAME %s`", email, email)
	}
	if err != nil {
		return nil, err
	}
	u.Email = email
	return u, nil
}

// SetUserEmail records a user's email ("" removes it). An email another user
// has is an EConflict error.
func (db *DB) SetUserEmail(ctx context.Context, name, email string) error {
	res, err := db.exec(ctx, `UPDATE users SET email = ? WHERE name = ?`, email, name)
	if err != nil {
		if isUnique(err) {
			return dspool.Errorf(dspool.EConflict, "another user has the email %s: see `dspool user list`", email)
		}
		return fmt.Errorf("set email of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("user", name)
	}
	return nil
}

// UserEmails returns every recorded email by user id.
func (db *DB) UserEmails(ctx context.Context) (map[int64]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, email FROM users WHERE email != ''`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var email string
		if err := rows.Scan(&id, &email); err != nil {
			return nil, err
		}
		out[id] = email
	}
	return out, rows.Err()
}
