package store

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSchemasAgree: the PostgreSQL schema has the tables, columns, and
// indexes that SQLite's migrations make, each column as nullable, so that
// one set of statements serves both.
func TestSchemasAgree(t *testing.T) {
	if !OnPostgres() {
		t.Skip("runs with the PostgreSQL run of these tests")
	}
	ctx := context.Background()
	lite, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	pg, err := OpenAt(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if v := schemaVersion; v != pgSchemaVersion+len(pgMigrations) {
		t.Fatalf("SQLite's schema is at version %d, PostgreSQL's at %d: write the migration for PostgreSQL too (pgMigrations)", v, pgSchemaVersion+len(pgMigrations))
	}

	columns := func(db *DB, q string) []string {
		rows, err := db.r.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var table, col string
			var notNull bool
			if err := rows.Scan(&table, &col, &notNull); err != nil {
				t.Fatal(err)
			}
			if table == "sqlite_sequence" || col == "rowid" && db.pg {
				continue
			}
			out = append(out, table+"."+col+map[bool]string{true: " NOT NULL", false: ""}[notNull])
		}
		slices.Sort(out)
		return out
	}
	l := columns(lite, `SELECT m.name, p.name, p."notnull" OR p.pk > 0 FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`)
	p := columns(pg, `SELECT table_name, column_name, is_nullable = 'NO' FROM information_schema.columns WHERE table_schema = current_schema()`)
	if !slices.Equal(l, p) {
		t.Errorf("the schemas differ:\nonly SQLite's: %s\nonly PostgreSQL's: %s", strings.Join(minus(l, p), ", "), strings.Join(minus(p, l), ", "))
	}

	names := func(db *DB, q string) []string {
		rows, err := db.r.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	li := names(lite, `SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`)
	pi := names(pg, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexdef LIKE 'CREATE INDEX%' OR schemaname = current_schema() AND indexname IN (`+quoted(li)+`)`)
	if !slices.Equal(li, pi) {
		t.Errorf("the indexes differ:\nonly SQLite's: %s\nonly PostgreSQL's: %s", strings.Join(minus(li, pi), ", "), strings.Join(minus(pi, li), ", "))
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func quoted(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = "'" + x + "'"
	}
	return strings.Join(q, ", ")
}

// TestRefusesForeignDatabase: a PostgreSQL database with tables of
// something else, or with a dspool schema newer than this dspool's, is
// refused with an error that says so.
func TestRefusesForeignDatabase(t *testing.T) {
	if !OnPostgres() {
		t.Skip("runs with the PostgreSQL run of these tests")
	}
	ctx := context.Background()
	foreign := filepath.Join(t.TempDir(), "foreign")
	raw := RawAt(t, foreign)
	if _, err := raw.ExecContext(ctx, `CREATE TABLE invoices (id BIGINT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAt(t, foreign, Options{}); err == nil || !strings.Contains(err.Error(), "a database of its own") {
		t.Errorf("open a database with another's tables: %v, want a refusal asking for a database of its own", err)
	}

	newer := filepath.Join(t.TempDir(), "newer")
	db, err := OpenAt(t, newer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := RawAt(t, newer).ExecContext(ctx, `UPDATE meta SET value = '1000' WHERE key = 'schema_version'`); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAt(t, newer, Options{}); err == nil || !strings.Contains(err.Error(), "upgrade dspool") {
		t.Errorf("open a store of a newer dspool: %v, want a refusal saying to upgrade dspool", err)
	}
}
