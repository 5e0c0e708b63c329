package sqlite

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
	path := filepath.Join(t.TempDir(), "old.db")
	before := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, "CREATE TABLE audit") })
	if before < 0 {
		t.Fatal("no migration creates the audit table")
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append([]string{schema}, migrations[:before]...) {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`INSERT INTO meta (key, value) VALUES ('uid_base', '20000')`,
		`INSERT INTO users (id, name, uid, gid, admin, created_at) VALUES (1, 'ada', 20000, 20000, 1, 0)`,
		`INSERT INTO tokens (id, user_id, hash, created_at) VALUES (7, 1, x'0102', 0)`,
		fmt.Sprintf(`PRAGMA user_version = %d`, before+1),
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path, Options{})
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
