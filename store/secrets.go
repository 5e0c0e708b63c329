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

// SealedSecret is a secret as the store keeps it: its metadata and its value
// sealed (package secrets); the store never sees the value itself.
type SealedSecret struct {
	dspool.Secret
	ID         int64
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

// Owner is the owner's kind ("user" or "team") and name.
func (s *SealedSecret) Owner() (kind, name string) {
	if s.Team != "" {
		return "team", s.Team
	}
	return "user", s.User
}

const secretCols = `id, owner_kind, owner, name, key_id, nonce, ciphertext, session_env, session_file,
	created_by, created_at, updated_at, last_read_at`

func scanSecret(s scanner) (*SealedSecret, error) {
	var x SealedSecret
	var kind, owner string
	var sessionFile int
	var created, updated, read sql.NullInt64
	if err := s.Scan(&x.ID, &kind, &owner, &x.Name, &x.KeyID, &x.Nonce, &x.Ciphertext, &x.SessionEnv, &sessionFile,
		&x.CreatedBy, &created, &updated, &read); err != nil {
		return nil, err
	}
	if kind == "team" {
		x.Team = owner
	} else {
		x.User = owner
	}
	x.SessionFile = sessionFile != 0
	x.CreatedAt, x.UpdatedAt, x.LastReadAt = *fromNano(created), *fromNano(updated), fromNano(read)
	return &x, nil
}

// PutSecret stores s, or replaces the value and session settings of the
// secret of the same owner and name (keeping when and by whom it was
// created). It returns the stored secret and whether it is new.
func (db *DB) PutSecret(ctx context.Context, s *SealedSecret) (*SealedSecret, bool, error) {
	kind, owner := s.Owner()
	now := unixNano(db.now())
	var out *SealedSecret
	created := false
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRow(`SELECT id FROM secrets WHERE owner_kind = ? AND owner = ? AND name = ?`, kind, owner, s.Name).Scan(&id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = true
			err = tx.QueryRow(`INSERT INTO secrets (owner_kind, owner, name, key_id, nonce, ciphertext, session_env, session_file,
				created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				kind, owner, s.Name, s.KeyID, s.Nonce, s.Ciphertext, s.SessionEnv, boolInt(s.SessionFile), s.CreatedBy, now, now).Scan(&id)
		case err == nil:
			_, err = tx.Exec(`UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, session_env = ?, session_file = ?, updated_at = ?
				WHERE id = ?`, s.KeyID, s.Nonce, s.Ciphertext, s.SessionEnv, boolInt(s.SessionFile), now, id)
		}
		if err != nil {
			return fmt.Errorf("store secret %s: %w", s.Name, err)
		}
		out, err = scanSecret(tx.QueryRow(`SELECT `+secretCols+` FROM secrets WHERE id = ?`, id))
		return err
	})
	return out, created, err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SecretOf returns the secret name of owner (kind "user" or "team").
func (db *DB) SecretOf(ctx context.Context, kind, owner, name string) (*SealedSecret, error) {
	s, err := scanSecret(db.r.QueryRowContext(ctx, `SELECT `+secretCols+` FROM secrets WHERE owner_kind = ? AND owner = ? AND name = ?`, kind, owner, name))
	if errors.Is(err, sql.ErrNoRows) {
		if kind == "team" {
			name = owner + "/" + name
		}
		return nil, notFound("secret", name)
	}
	return s, err
}

// SecretsOf lists the secrets of a user and of teams, by team ("" first)
// and name.
func (db *DB) SecretsOf(ctx context.Context, user string, teams []string) ([]*SealedSecret, error) {
	q := `SELECT ` + secretCols + ` FROM secrets WHERE (owner_kind = 'user' AND owner = ?)`
	args := []any{user}
	if len(teams) > 0 {
		q += ` OR (owner_kind = 'team' AND owner IN (?` + strings.Repeat(", ?", len(teams)-1) + `))`
		for _, t := range teams {
			args = append(args, t)
		}
	}
	return queryAll(ctx, db.r, scanSecret, q+` ORDER BY owner_kind = 'team', owner, name`, args...)
}

// DeleteSecret removes the secret name of owner.
func (db *DB) DeleteSecret(ctx context.Context, kind, owner, name string) error {
	res, err := db.exec(ctx, `DELETE FROM secrets WHERE owner_kind = ? AND owner = ? AND name = ?`, kind, owner, name)
	if err != nil {
		return fmt.Errorf("delete secret %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if kind == "team" {
			name = owner + "/" + name
		}
		return notFound("secret", name)
	}
	return nil
}

// SecretsRead records that these secrets were read (given to work) at at.
func (db *DB) SecretsRead(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{unixNano(at)}
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := db.exec(ctx, `UPDATE secrets SET last_read_at = ? WHERE id IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
	if err != nil {
		return fmt.Errorf("record secrets read: %w", err)
	}
	return nil
}

// SecretKeyIDs returns the ids of the keys the stored secrets are sealed
// under.
func (db *DB) SecretKeyIDs(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT key_id FROM secrets ORDER BY key_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// ResealSecrets calls reseal on every secret, which replaces its key id,
// nonce and ciphertext, and stores them all in one transaction: either
// every secret is under the new key, or none is. It returns how many.
func (db *DB) ResealSecrets(ctx context.Context, reseal func(*SealedSecret) error) (int, error) {
	n := 0
	err := db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT ` + secretCols + ` FROM secrets ORDER BY id`)
		if err != nil {
			return err
		}
		var all []*SealedSecret
		for rows.Next() {
			s, err := scanSecret(rows)
			if err != nil {
				rows.Close()
				return err
			}
			all = append(all, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, s := range all {
			if err := reseal(s); err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ? WHERE id = ?`, s.KeyID, s.Nonce, s.Ciphertext, s.ID); err != nil {
				return fmt.Errorf("reseal secret %d: %w", s.ID, err)
			}
		}
		n = len(all)
		return nil
	})
	return n, err
}
