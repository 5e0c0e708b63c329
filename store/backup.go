package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/atomicfile"
	msqlite "modernc.org/sqlite"
)

// Backups. A backup is the store as of one moment, written by VACUUM INTO
// from a read-only connection of its own: it reads one snapshot of the WAL,
// so the writer goes on meanwhile, and it writes a compact file with no WAL
// beside it, which a restore puts in place as it is. (The store's reading
// pool is query_only, which refuses VACUUM INTO.)

// sqliteCorrupt is SQLite's result code for a damaged file
// (SQLITE_CORRUPT).
const sqliteCorrupt = 11

// Backup writes a consistent copy of the store to path, which must not
// exist or be empty. The copy is not synced: the caller syncs it where it
// ends up.
func (db *DB) Backup(ctx context.Context, path string) error {
	return vacuumInto(ctx, db.path, path)
}

// BackupFile copies the store at src, which no control plane has open
// (the caller holds its data directory's lock), to dst as Backup does. It
// changes nothing in src: a store of an older schema is copied as it is.
func BackupFile(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("back up the store: %w", err)
	}
	return vacuumInto(ctx, src, dst)
}

func vacuumInto(ctx context.Context, src, dst string) error {
	c, err := sql.Open("sqlite", "file:"+src+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("back up the store %s: %w", src, err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("back up the store %s to %s: %w", src, dst, err)
	}
	return nil
}

// BackupInfo is what CheckBackup finds in a copy of a store.
type BackupInfo struct {
	// Schema is the copy's schema version; a store of an older one is
	// upgraded when a control plane first opens it.
	Schema int `json:"schema"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Users, Jobs and Secrets count what the copy holds.
	Users   int `json:"users"`
	Jobs    int `json:"jobs"`
	Secrets int `json:"secrets"`
	// SecretKeys are the ids of the keys its secrets are sealed under: the
	// control plane that opens it needs that key (DATA/secrets.key).
	SecretKeys []string `json:"secret_keys,omitempty"`
}

// CheckBackup opens the file at path read-only and checks that it is a
// whole dspool store that this version can open: its schema version, and
// SQLite's integrity check. A file that is not one is refused with an
// error that names it.
func CheckBackup(ctx context.Context, path string) (*BackupInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	// immutable: a copy has no WAL and nothing else writes it, so no lock
	// or shared-memory file is made beside it.
	c, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer c.Close()
	info := &BackupInfo{Size: fi.Size()}
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&info.Schema); err != nil {
		var e *msqlite.Error
		if errors.As(err, &e) && e.Code()&0xff == sqliteCorrupt {
			return nil, fmt.Errorf("%s is damaged (%w): take another backup", path, err)
		}
		return nil, fmt.Errorf("%s is not a dspool store: %w", path, err)
	}
	switch {
	case info.Schema < 1:
		return nil, fmt.Errorf("%s is not a dspool store (it has no dspool schema version)", path)
	case info.Schema > schemaVersion:
		return nil, fmt.Errorf("%s is a store of schema version %d, newer than this dspool understands (%d): restore it with a newer dspool", path, info.Schema, schemaVersion)
	}
	var ok string
	if err := c.QueryRowContext(ctx, "PRAGMA integrity_check(1)").Scan(&ok); err != nil || ok != "ok" {
		return nil, fmt.Errorf("%s is damaged (integrity check: %s %v): take another backup", path, ok, err)
	}
	for _, n := range []struct {
		table string
		into  *int
	}{{"users", &info.Users}, {"jobs", &info.Jobs}, {"secrets", &info.Secrets}} {
		// A store from before secrets has no table of them.
		var tables int
		err := c.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", n.table).Scan(&tables)
		if err == nil && tables > 0 {
			err = c.QueryRowContext(ctx, "SELECT count(*) FROM "+n.table).Scan(n.into)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: count %s: %w", path, n.table, err)
		}
	}
	if info.Secrets > 0 {
		rows, err := c.QueryContext(ctx, "SELECT DISTINCT key_id FROM secrets ORDER BY key_id")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return nil, err
			}
			info.SecretKeys = append(info.SecretKeys, id)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// Restore copies the checked backup at src to dst, a store path that must
// not exist (nor its WAL), and syncs it. It refuses a file that
// CheckBackup refuses, and an existing store, naming it.
func Restore(ctx context.Context, src, dst string) (*BackupInfo, error) {
	info, err := CheckBackup(ctx, src)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{dst, dst + "-wal", dst + "-shm"} {
		if _, err := os.Lstat(f); err == nil {
			return nil, &dspool.Error{Code: dspool.EConflict, Message: fmt.Sprintf("%s exists: restore into a new data directory, or move it away first", f)}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if err := copyChecked(ctx, src, dst); err != nil {
		return nil, fmt.Errorf("restore %s to %s: %w", src, dst, err)
	}
	return info, nil
}

// copyChecked copies src to dst (mode 0600), checks the copy before it is
// put in place, and makes it durable.
func copyChecked(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := atomicfile.New(dst, 0o600)
	if err != nil {
		return err
	}
	defer out.Abort()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if _, err := CheckBackup(ctx, out.Name()); err != nil {
		return fmt.Errorf("the copy does not check: %w", err)
	}
	return out.Commit()
}
