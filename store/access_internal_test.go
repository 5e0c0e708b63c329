package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestTokensOfEarlierVersions: a store made before tokens had scopes keeps
// its tokens working, with every scope and no expiry.
func TestTokensOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	path := storeBefore(t, "CREATE TABLE audit",
		`INSERT INTO meta (key, value) VALUES ('uid_base', '20000')`,
		`INSERT INTO users (id, name, uid, gid, admin, created_at) VALUES (1, 'ada', 20000, 20000, 1, 0)`,
		`INSERT INTO tokens (id, user_id, hash, created_at) VALUES (7, 1, x'0102', 0)`)
	db, err := OpenAt(t, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, tok, err := db.TokenByHash(ctx, []byte{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "ada" || u.Disabled || tok.ID != 7 || !slices.Equal(tok.Scopes, dspool.Scopes) || tok.ExpiresAt != nil || tok.RevokedAt != nil {
		t.Fatalf("old token after the upgrade: %+v of %+v; want every scope, no expiry", tok, u)
	}
}

// TestJoinTokensAndNodesOfEarlierVersions: a store made before join tokens
// expired keeps its tokens working, without expiry; its gone nodes (all
// retired then) stay removed.
func TestJoinTokensAndNodesOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	path := storeBefore(t, "join_tokens ADD COLUMN expires_at",
		`INSERT INTO meta (key, value) VALUES ('uid_base', '20000')`,
		`INSERT INTO pools (name, spec, created_at, updated_at) VALUES ('gpu', '{"name":"gpu"}', 0, 0)`,
		`INSERT INTO join_tokens (hash, pool, created_at) VALUES (x'0102', 'gpu', 0)`,
		`INSERT INTO nodes (id, name, pool, state, cred_hash, created_at, gone_at) VALUES ('n-1', 'gpu-1', 'gpu', 'gone', x'03', 0, 5)`)
	db, err := OpenAt(t, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if pool, err := db.JoinTokenPool(ctx, []byte{1, 2}); err != nil || pool != "gpu" {
		t.Errorf("old join token after the upgrade: got %q %v, want it to join gpu", pool, err)
	}
	ts, err := db.JoinTokens(ctx, "gpu")
	if err != nil || len(ts) != 1 || ts[0].ExpiresAt != nil || ts[0].RevokedAt != nil || ts[0].ID == 0 {
		t.Errorf("old join tokens listed: %+v %v, want one with an id and no expiry", ts, err)
	}
	if _, err := db.NodeByCredential(ctx, []byte{3}); dspool.ErrorCode(err) != dspool.EUnauthorized {
		t.Errorf("a node retired before the upgrade: %v, want its credential refused", err)
	}
}

// storeBefore makes a store of the version before the migration that
// contains marker, with rows, and returns its path.
func storeBefore(t *testing.T, marker string, rows ...string) string {
	t.Helper()
	SkipOnPostgres(t, "upgrades of SQLite stores made by earlier versions")
	path := filepath.Join(t.TempDir(), "old.db")
	before := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, marker) })
	if before < 0 {
		t.Fatalf("no migration contains %q", marker)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	qs := append(append([]string{schema}, migrations[:before]...), rows...)
	for _, q := range append(qs, fmt.Sprintf(`PRAGMA user_version = %d`, before+1)) {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return path
}
