package store_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func TestBackupWhileWritingThenRestore(t *testing.T) {
	store.SkipOnPostgres(t, "dspool backup copies SQLite stores; PostgreSQL's have pg_dump")
	dir := t.TempDir()
	db := open(t, filepath.Join(dir, "data", "dspool.db"))
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.PutSecret(ctx, sealed("ada", "", "hf", "k-1", "sealed")); err != nil {
		t.Fatal(err)
	}
	submit := func() int64 {
		spec := dspool.JobSpec{Command: []string{"true"}}
		if err := spec.Normalize(); err != nil {
			t.Fatal(err)
		}
		j, _, err := db.SubmitJob(ctx, u.ID, &spec)
		if err != nil {
			t.Error(err)
			return 0
		}
		return j.ID
	}
	for range 50 {
		submit()
	}
	// Submissions go on while the backup is made: it is one moment's
	// store, whole, and the writer is never refused.
	var wg sync.WaitGroup
	var during atomic.Int64
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if submit() != 0 {
				during.Add(1)
			}
		}
	}()
	backup := filepath.Join(dir, "backup.db")
	err = db.Backup(ctx, backup)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.CheckBackup(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	if info.Users != 1 || info.Jobs < 50 || info.Jobs > 50+int(during.Load()) || info.Secrets != 1 || strings.Join(info.SecretKeys, ",") != "k-1" {
		t.Errorf("backup holds %+v; want 1 user, 50 to %d jobs, 1 secret under k-1", info, 50+during.Load())
	}
	for _, f := range []string{backup + "-wal", backup + "-shm"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s beside the backup: want one file", f)
		}
	}

	restored := filepath.Join(dir, "new", "dspool.db")
	if err := os.MkdirAll(filepath.Dir(restored), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Restore(ctx, backup, restored); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(restored); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored store: %v %v; want mode 0600", fi, err)
	}
	_, err = store.Restore(ctx, backup, restored)
	if dspool.ErrorCode(err) != dspool.EConflict || !strings.Contains(err.Error(), restored+" exists") {
		t.Errorf("restore over a store: %v; want a conflict naming it", err)
	}
	rdb := open(t, restored)
	if got, err := rdb.User(ctx, "ada"); err != nil || got.UID != u.UID {
		t.Errorf("restored user: %+v %v; want ada with uid %d", got, err, u.UID)
	}
	jobs, err := rdb.ListJobs(ctx, store.JobFilter{})
	if err != nil || len(jobs) != info.Jobs {
		t.Errorf("restored jobs: %d %v; want %d", len(jobs), err, info.Jobs)
	}
	if s, err := rdb.SecretOf(ctx, "user", "ada", "hf"); err != nil || string(s.Ciphertext) != "sealed" {
		t.Errorf("restored secret: %+v %v", s, err)
	}
	// The restored store takes work again, after the ids it had.
	spec := dspool.JobSpec{Command: []string{"true"}}
	_ = spec.Normalize()
	if j, _, err := rdb.SubmitJob(ctx, u.ID, &spec); err != nil || j.ID <= jobs[0].ID {
		t.Errorf("submit to the restored store: %+v %v; want an id after %d", j, err, jobs[0].ID)
	}
}

func TestCheckBackupRefuses(t *testing.T) {
	store.SkipOnPostgres(t, "dspool backup copies SQLite stores; PostgreSQL's have pg_dump")
	dir := t.TempDir()
	ctx := context.Background()
	db := open(t, filepath.Join(dir, "dspool.db"))
	good := filepath.Join(dir, "good.db")
	if err := db.Backup(ctx, good); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := filepath.Join(dir, "other.db")
	c, err := sql.Open("sqlite", "file:"+other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec("CREATE TABLE t(a)"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	newer := write("newer.db", b)
	c, err = sql.Open("sqlite", "file:"+newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec("PRAGMA user_version = 1000"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, tt := range []struct {
		name, path, want string
	}{
		{"text", write("notes.txt", []byte(strings.Repeat("not a store\n", 500))), "not a dspool store"},
		{"another database", other, "not a dspool store"},
		{"cut short", write("short.db", b[:len(b)/2]), "is damaged"},
		{"newer", newer, "newer than this dspool understands"},
		{"missing", filepath.Join(dir, "nope.db"), "no such file"},
		{"directory", dir, "not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.CheckBackup(ctx, tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.path) && tt.name != "missing" {
				t.Fatalf("got %v; want a refusal naming %s", err, tt.path)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want %q", err, tt.want)
			}
		})
	}
}
