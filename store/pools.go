package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// PutPool creates or replaces a pool (already validated).
func (db *DB) PutPool(ctx context.Context, p *dspool.Pool) (*dspool.Pool, error) {
	out := *p
	err := db.tx(ctx, func(tx *sql.Tx) error {
		now := db.now().UTC()
		var created sql.NullInt64
		err := tx.QueryRow(`SELECT created_at FROM pools WHERE name = ?`, p.Name).Scan(&created)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out.CreatedAt, out.UpdatedAt = now, now
		if created.Valid {
			out.CreatedAt = *fromNano(created)
		}
		spec, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO pools (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
			p.Name, string(spec), unixNano(out.CreatedAt), unixNano(now))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put pool %s: %w", p.Name, err)
	}
	return &out, nil
}

// Pool returns pool name.
func (db *DB) Pool(ctx context.Context, name string) (*dspool.Pool, error) {
	var spec string
	err := db.r.QueryRowContext(ctx, `SELECT spec FROM pools WHERE name = ?`, name).Scan(&spec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("pool", name)
	}
	if err != nil {
		return nil, err
	}
	var p dspool.Pool
	return &p, json.Unmarshal([]byte(spec), &p)
}

// Pools lists pools by name.
func (db *DB) Pools(ctx context.Context) ([]*dspool.Pool, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT spec FROM pools ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*dspool.Pool
	for rows.Next() {
		var spec string
		if err := rows.Scan(&spec); err != nil {
			return nil, err
		}
		var p dspool.Pool
		if err := json.Unmarshal([]byte(spec), &p); err != nil {
			return nil, err
		}
		out = append(out, &p)
	}
	return out, rows.Err()
}

const nodeCols = `id, name, pool, state, message, inventory, labels, version, created_at, last_seen, accounts`

// The lookups of one node: by id or name (the id first), and by the hash of
// a credential (current or next). Each heartbeat makes the first, each
// agent connection the second: they must use the indexes (plan test).
const (
	nodeByIDOrName   = `SELECT ` + nodeCols + ` FROM nodes WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1`
	nodeByCredential = `SELECT id, CASE WHEN next_cred_hash = ? THEN 1 ELSE 0 END, cred_revoked_at, removed_at FROM nodes WHERE cred_hash = ? OR next_cred_hash = ?`
)

// scanNode reads the columns nodeCols, then into extra those that follow.
func scanNode(s scanner, extra ...any) (*dspool.Node, error) {
	var n dspool.Node
	var inv, labels, accts string
	var created, seen sql.NullInt64
	dest := append([]any{&n.ID, &n.Name, &n.Pool, &n.State, &n.Message, &inv, &labels, &n.Version, &created, &seen, &accts}, extra...)
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(accts), &n.Accounts); err != nil {
		return nil, fmt.Errorf("node %s accounts: %w", n.ID, err)
	}
	if err := json.Unmarshal([]byte(inv), &n.Inventory); err != nil {
		return nil, fmt.Errorf("node %s inventory: %w", n.ID, err)
	}
	if err := json.Unmarshal([]byte(labels), &n.Labels); err != nil {
		return nil, fmt.Errorf("node %s labels: %w", n.ID, err)
	}
	n.CreatedAt = *fromNano(created)
	n.LastSeen = fromNano(seen)
	return &n, nil
}

// CreateNode stores a newly registered node with the hash of its credential.
func (db *DB) CreateNode(ctx context.Context, n *dspool.Node, credHash []byte) error {
	inv, _ := json.Marshal(n.Inventory)
	labels, _ := json.Marshal(n.Labels)
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO nodes (id, name, pool, state, message, inventory, labels, version, cred_hash, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, n.ID, n.Name, n.Pool, string(n.State), n.Message, string(inv), string(labels),
			n.Version, credHash, unixNano(n.CreatedAt))
		if err != nil {
			return fmt.Errorf("create node: %w", err)
		}
		return nil
	})
}

// NodeByCredential returns the node whose credential has this hash, or an
// EUnauthorized error.
// A node's next credential (see RotateNodeCredential) becomes its current
// one when it is first used; a revoked or removed node's credential is
// refused with an error that says so.
func (db *DB) NodeByCredential(ctx context.Context, hash []byte) (*dspool.Node, error) {
	var id string
	var next bool
	var revoked, removed sql.NullInt64
	err := db.r.QueryRowContext(ctx, nodeByCredential, hash, hash, hash).Scan(&id, &next, &revoked, &removed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, dspool.Errorf(dspool.EUnauthorized, "node credential not recognised: remove the agent's state directory and join again with a new join token")
	case err != nil:
		return nil, err
	case revoked.Valid:
		return nil, dspool.Errorf(dspool.EUnauthorized, "this node's credential was revoked by an admin at %s: the node is out of the pool; to bring the machine back, remove the agent's node.json and join again with a new join token",
			fromNano(revoked).Format(time.RFC3339))
	case removed.Valid:
		n, err := db.Node(ctx, id)
		if err != nil {
			return nil, err
		}
		return nil, dspool.Errorf(dspool.EUnauthorized, "node %s was removed from pool %s at %s: its credential is refused. To join this machine again, "+
			"remove the agent's state directory (its node.json) and start it with a new join token (dspool pool join-token %s)",
			n.Name, n.Pool, fromNano(removed).Local().Format(time.DateTime), n.Pool)
	case next:
		if _, err := db.exec(ctx, `UPDATE nodes SET cred_hash = next_cred_hash, next_cred_hash = NULL WHERE id = ? AND next_cred_hash = ?`, id, hash); err != nil {
			return nil, fmt.Errorf("take a node's new credential: %w", err)
		}
	}
	return db.Node(ctx, id)
}

// RotateNodeCredential records hash as node id's next credential: its
// current one stays good until the next is first used, so an agent that
// dies before keeping the new one still gets in.
func (db *DB) RotateNodeCredential(ctx context.Context, id string, hash []byte) error {
	res, err := db.exec(ctx, `UPDATE nodes SET next_cred_hash = ? WHERE id = ? AND cred_revoked_at IS NULL AND removed_at IS NULL`, hash, id)
	if err != nil {
		return fmt.Errorf("rotate node %s's credential: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return dspool.Errorf(dspool.EUnauthorized, "node %s may not rotate its credential: it was removed or revoked", id)
	}
	return nil
}

// RevokeNodeCredential revokes node id's credentials, current and next,
// at t.
func (db *DB) RevokeNodeCredential(ctx context.Context, id string, t time.Time) error {
	_, err := db.exec(ctx, `UPDATE nodes SET cred_revoked_at = ?, next_cred_hash = NULL WHERE id = ? AND cred_revoked_at IS NULL`, unixNano(t), id)
	if err != nil {
		return fmt.Errorf("revoke node %s's credential: %w", id, err)
	}
	return nil
}

// Node returns node id.
func (db *DB) Node(ctx context.Context, id string) (*dspool.Node, error) {
	n, err := scanNode(db.r.QueryRowContext(ctx, nodeByIDOrName, id, id, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("node", id)
	}
	return n, err
}

// Nodes lists nodes, of one pool when pool is not empty, gone ones omitted
// unless all is set.
func (db *DB) Nodes(ctx context.Context, pool string, all bool) ([]*dspool.Node, error) {
	q := `SELECT ` + nodeCols + ` FROM nodes WHERE (? = '' OR pool = ?)`
	if !all {
		q += ` AND state != 'gone'`
	}
	return queryAll(ctx, db.r, func(s scanner) (*dspool.Node, error) { return scanNode(s) }, q+` ORDER BY pool, name`, pool, pool)
}

// UpdateNode writes a node's state, message, inventory, version, accounts
// and last contact; a node that becomes gone goes now (by the store's
// clock), and one that comes back from gone is no longer gone. A removed
// node stays as it is: a heartbeat that raced its removal does not bring it
// back. A writer that read the node first uses ChangeNode instead.
func (db *DB) UpdateNode(ctx context.Context, n *dspool.Node) error {
	return db.tx(ctx, func(tx *sql.Tx) error { return db.updateNode(tx, n) })
}

// ChangeNode reads node id and writes it back (as UpdateNode) in one
// transaction, when change, given the node as the store has it, says so.
// It returns the node as it is after. What another writer did between a
// read and a write is thus never undone (a drain, by a heartbeat).
func (db *DB) ChangeNode(ctx context.Context, id string, change func(*dspool.Node) bool) (*dspool.Node, error) {
	var n *dspool.Node
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = scanNode(tx.QueryRowContext(ctx, `SELECT `+nodeCols+` FROM nodes WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("node", id)
		}
		if err != nil || !change(n) {
			return err
		}
		return db.updateNode(tx, n)
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (db *DB) updateNode(tx *sql.Tx, n *dspool.Node) error {
	inv, _ := json.Marshal(n.Inventory)
	accts, _ := json.Marshal(n.Accounts)
	if n.Accounts == nil {
		accts = []byte("[]")
	}
	var goneAt any
	if n.State == dspool.NodeGone {
		goneAt = unixNano(db.now())
	}
	_, err := tx.Exec(`UPDATE nodes SET state = ?, message = ?, inventory = ?, version = ?, last_seen = ?,
			gone_at = CASE WHEN CAST(? AS BIGINT) IS NULL THEN NULL ELSE COALESCE(gone_at, ?) END, accounts = ? WHERE id = ? AND removed_at IS NULL`,
		string(n.State), n.Message, string(inv), n.Version, nullTime(n.LastSeen), goneAt, goneAt, string(accts), n.ID)
	return err
}

// RetireNode removes the node called name in pool (the newest of that
// name not removed yet): it is gone, on purpose, neither lost nor expected
// back, and its credential is refused from now on. Attempts still running
// there end with reason node_lost (retried when their job allows).
func (db *DB) RetireNode(ctx context.Context, pool, name string) ([]*dspool.Job, error) {
	var id string
	err := db.r.QueryRowContext(ctx, `SELECT id FROM nodes WHERE pool = ? AND name = ? AND removed_at IS NULL
		ORDER BY created_at DESC LIMIT 1`, pool, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return db.RemoveNode(ctx, id, "removed from the pool")
}

// RemoveNode removes node id (see RetireNode), with message as its last
// word.
func (db *DB) RemoveNode(ctx context.Context, id, message string) ([]*dspool.Job, error) {
	return db.endNode(ctx, id, nodeExit{state: dspool.NodeGone, message: message, removed: true})
}

// DeletePool deletes pool name and its join tokens, cancels its queued and
// running jobs with message (the running ones' attempts end with reason
// node_removed), and removes the nodes it still has. It returns the jobs
// it ended, as they were running or queued (their node and attempt), and
// the ids of the nodes it removed.
func (db *DB) DeletePool(ctx context.Context, name, message string) ([]*dspool.Job, []string, error) {
	now := db.now()
	var ended []*dspool.Job
	var nodes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		ended, nodes = nil, nil
		if err := tx.QueryRow(`SELECT name FROM pools WHERE name = ?`, name).Scan(new(string)); errors.Is(err, sql.ErrNoRows) {
			return notFound("pool", name)
		} else if err != nil {
			return err
		}
		ids, err := queryAll(ctx, tx, scanID, `SELECT id FROM jobs WHERE pool = ? AND state IN ('queued', 'running') ORDER BY id`, name)
		if err != nil {
			return err
		}
		for _, id := range ids {
			j, err := getJob(tx, id)
			if err != nil {
				return err
			}
			was := *j
			if j.State == dspool.JobRunning {
				j.CancelRequested = true
				err = finish(tx, j, dspool.AttemptResult{Reason: dspool.ReasonNodeRemoved, Message: message}, now)
			} else {
				_ = j.Cancel(now)
				j.Message = message
				err = saveJob(tx, j)
			}
			if err != nil {
				return err
			}
			ended = append(ended, &was)
		}
		nodes, err = queryAll(ctx, tx, func(s scanner) (string, error) {
			var id string
			return id, s.Scan(&id)
		}, `UPDATE nodes SET state = 'gone', message = ?1, gone_at = COALESCE(gone_at, ?2), removed_at = ?2
			WHERE pool = ?3 AND removed_at IS NULL RETURNING id`, message, unixNano(now), name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM join_tokens WHERE pool = ?`, name); err != nil {
			return err
		}
		_, err = tx.Exec(`DELETE FROM pools WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("delete pool %s: %w", name, err)
	}
	return ended, nodes, nil
}

func scanID(s scanner) (int64, error) {
	var id int64
	return id, s.Scan(&id)
}
