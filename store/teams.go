package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dspool/dspool"
)

// CreateTeam creates a team with no members and no limits. A taken name is
// an EConflict error.
func (db *DB) CreateTeam(ctx context.Context, name string) (*dspool.Team, error) {
	if err := dspool.ValidateName("name", name); err != nil {
		return nil, err
	}
	var t *dspool.Team
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO teams (name, created_at) VALUES (?, ?)`, name, unixNano(db.now())); err != nil {
			if isUnique(err) {
				return dspool.Errorf(dspool.EConflict, "team %s already exists", name)
			}
			return fmt.Errorf("create team: %w", err)
		}
		var err error
		t, err = getTeam(ctx, tx, name)
		return err
	})
	return t, err
}

// Team returns the team called name with its members, by user name.
func (db *DB) Team(ctx context.Context, name string) (*dspool.Team, error) {
	return getTeam(ctx, db.r, name)
}

// Teams returns every team with its members, by name.
func (db *DB) Teams(ctx context.Context) ([]*dspool.Team, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, name, limits, created_at FROM teams ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	var out []*dspool.Team
	byID := map[int64]*dspool.Team{}
	for rows.Next() {
		id, t, err := scanTeam(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, t)
		byID[id] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = db.r.QueryContext(ctx, `SELECT m.team_id, u.name, m.maintainer FROM team_members m
		JOIN users u ON u.id = m.user_id ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("list team members: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var m dspool.TeamMember
		if err := rows.Scan(&id, &m.User, &m.Maintainer); err != nil {
			return nil, err
		}
		if t := byID[id]; t != nil {
			t.Members = append(t.Members, m)
		}
	}
	return out, rows.Err()
}

// DeleteTeam deletes a team and its memberships. Jobs keep the team's name.
func (db *DB) DeleteTeam(ctx context.Context, name string) error {
	res, err := db.exec(ctx, `DELETE FROM teams WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete team %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("team", name)
	}
	return nil
}

// AddTeamMember makes user a member of team, a maintainer or not; adding a
// member again changes whether they maintain it.
func (db *DB) AddTeamMember(ctx context.Context, team, user string, maintainer bool) (*dspool.Team, error) {
	var t *dspool.Team
	err := db.tx(ctx, func(tx *sql.Tx) error {
		tid, uid, err := teamAndUser(tx, team, user)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO team_members (team_id, user_id, maintainer) VALUES (?, ?, ?)
			ON CONFLICT (team_id, user_id) DO UPDATE SET maintainer = excluded.maintainer`, tid, uid, maintainer); err != nil {
			return fmt.Errorf("add %s to team %s: %w", user, team, err)
		}
		t, err = getTeam(ctx, tx, team)
		return err
	})
	return t, err
}

// RemoveTeamMember removes user from team; a user who is not in it is an
// ENotFound error.
func (db *DB) RemoveTeamMember(ctx context.Context, team, user string) (*dspool.Team, error) {
	var t *dspool.Team
	err := db.tx(ctx, func(tx *sql.Tx) error {
		tid, uid, err := teamAndUser(tx, team, user)
		if err != nil {
			return err
		}
		res, err := tx.Exec(`DELETE FROM team_members WHERE team_id = ? AND user_id = ?`, tid, uid)
		if err != nil {
			return fmt.Errorf("remove %s from team %s: %w", user, team, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return dspool.Errorf(dspool.ENotFound, "%s is not a member of team %s: see its members with `dspool team show %s`", user, team, team)
		}
		t, err = getTeam(ctx, tx, team)
		return err
	})
	return t, err
}

// SetTeamLimits replaces a team's limits.
func (db *DB) SetTeamLimits(ctx context.Context, team string, l dspool.Limits) (*dspool.Team, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	var t *dspool.Team
	err = db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE teams SET limits = ? WHERE name = ?`, string(b), team)
		if err != nil {
			return fmt.Errorf("set limits of team %s: %w", team, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("team", team)
		}
		t, err = getTeam(ctx, tx, team)
		return err
	})
	return t, err
}

// SetUserLimits replaces a user's own limits; limits of nothing remove them.
func (db *DB) SetUserLimits(ctx context.Context, user string, l dspool.Limits) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		var uid int64
		if err := tx.QueryRow(`SELECT id FROM users WHERE name = ?`, user).Scan(&uid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("user", user)
			}
			return err
		}
		if l.None() {
			_, err = tx.Exec(`DELETE FROM user_limits WHERE user_id = ?`, uid)
		} else {
			_, err = tx.Exec(`INSERT INTO user_limits (user_id, limits) VALUES (?, ?)
				ON CONFLICT (user_id) DO UPDATE SET limits = excluded.limits`, uid, string(b))
		}
		if err != nil {
			return fmt.Errorf("set limits of user %s: %w", user, err)
		}
		return nil
	})
}

// UserLimits returns the limits of every user who has any, by name.
func (db *DB) UserLimits(ctx context.Context) (map[string]dspool.Limits, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT u.name, l.limits FROM user_limits l JOIN users u ON u.id = l.user_id`)
	if err != nil {
		return nil, fmt.Errorf("user limits: %w", err)
	}
	defer rows.Close()
	out := map[string]dspool.Limits{}
	for rows.Next() {
		var name, js string
		if err := rows.Scan(&name, &js); err != nil {
			return nil, err
		}
		var l dspool.Limits
		if err := json.Unmarshal([]byte(js), &l); err != nil {
			return nil, fmt.Errorf("limits of user %s: %w", name, err)
		}
		out[name] = l
	}
	return out, rows.Err()
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func scanTeam(s scanner) (int64, *dspool.Team, error) {
	var id int64
	var t dspool.Team
	var limits string
	var created sql.NullInt64
	if err := s.Scan(&id, &t.Name, &limits, &created); err != nil {
		return 0, nil, err
	}
	if err := json.Unmarshal([]byte(limits), &t.Limits); err != nil {
		return 0, nil, fmt.Errorf("limits of team %s: %w", t.Name, err)
	}
	t.CreatedAt = *fromNano(created)
	t.Members = []dspool.TeamMember{}
	return id, &t, nil
}

func getTeam(ctx context.Context, q queryer, name string) (*dspool.Team, error) {
	id, t, err := scanTeam(q.QueryRowContext(ctx, `SELECT id, name, limits, created_at FROM teams WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("team", name)
	}
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT u.name, m.maintainer FROM team_members m JOIN users u ON u.id = m.user_id
		WHERE m.team_id = ? ORDER BY u.name`, id)
	if err != nil {
		return nil, fmt.Errorf("members of team %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var m dspool.TeamMember
		if err := rows.Scan(&m.User, &m.Maintainer); err != nil {
			return nil, err
		}
		t.Members = append(t.Members, m)
	}
	return t, rows.Err()
}

func teamAndUser(tx *sql.Tx, team, user string) (tid, uid int64, err error) {
	if err := tx.QueryRow(`SELECT id FROM teams WHERE name = ?`, team).Scan(&tid); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, notFound("team", team)
		}
		return 0, 0, err
	}
	if err := tx.QueryRow(`SELECT id FROM users WHERE name = ?`, user).Scan(&uid); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, notFound("user", user)
		}
		return 0, 0, err
	}
	return tid, uid, nil
}
