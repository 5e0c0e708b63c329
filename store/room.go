package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
	msqlite "modernc.org/sqlite"
)

// Room on the store's disk. The store keeps a reserve: a file of
// Options.Reserve bytes beside it, taken from the file system when the store
// opens. When a write finds the disk full, the store gives the reserve back,
// so that the writes that keep work correct (heartbeats, attempts that end,
// cancellations) still commit while an operator frees room; meanwhile it is
// short of room and says so (Room), and the server refuses new work. Once
// there is room again, CheckRoom takes the reserve back and the store is
// whole. Without room even for those writes, writes fail with an
// unavailable error that says what to do, and reads keep working.

// DefaultReserve is the room the store keeps for itself by default.
const DefaultReserve = 64 << 20

// sqliteFull is SQLite's result code for a full disk (SQLITE_FULL).
const sqliteFull = 13

type room struct {
	path string // the reserve file
	size int64  // 0: no reserve
	mu   sync.Mutex
	// short says why the store is short of room; "" when it is not.
	short string
}

func newRoom(dbPath string, size int64) *room {
	return &room{path: dbPath + ".reserve", size: size}
}

// take makes the reserve file, allocating its blocks, unless it is whole.
func (rm *room) take() error {
	if rm.size <= 0 {
		return nil
	}
	if fi, err := os.Stat(rm.path); err == nil && fi.Size() == rm.size {
		return nil
	}
	f, err := os.OpenFile(rm.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, rm.size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = writeZeros(f, rm.size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(rm.path)
	}
	return err
}

func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// isFull reports whether err is a write that found the disk full.
func isFull(err error) bool {
	var e *msqlite.Error
	if errors.As(err, &e) && e.Code()&0xff == sqliteFull {
		return true
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// written looks at the outcome of a write: a full disk gives the reserve
// back, marks the store short of room and becomes an unavailable error that
// says what to do.
func (db *DB) written(err error) error {
	if err == nil || !isFull(err) {
		return err
	}
	rm := db.room
	rm.mu.Lock()
	released := false
	if rm.size > 0 {
		if rerr := os.Remove(rm.path); rerr == nil {
			released = true
		}
	}
	if rm.short == "" || released {
		rm.short = fmt.Sprintf("the store's disk (%s) is full", filepath.Dir(db.path))
		if released {
			rm.short += fmt.Sprintf("; it gave back its reserve of %d MiB to keep recording running work", rm.size>>20)
		}
	}
	short := rm.short
	rm.mu.Unlock()
	return &dspool.Error{Code: dspool.EUnavailable, Message: short + ": free room on it (df -h " + filepath.Dir(db.path) +
		"), or move the share to a file system of its own, then try again; reads keep working"}
}

// Room returns nil while the store has its reserve and its disk has room,
// or an unavailable error saying why not and what to do.
func (db *DB) Room() error {
	db.room.mu.Lock()
	defer db.room.mu.Unlock()
	if db.room.short == "" {
		return nil
	}
	return &dspool.Error{Code: dspool.EUnavailable, Message: db.room.short + ": it takes no new work until there is room; free room on " +
		filepath.Dir(db.path) + " (df -h), or move the share to a file system of its own"}
}

// CheckRoom takes the reserve back once the disk has room for it and twice
// as much again, and reports whether the store is short of room now. A
// server calls it every few seconds.
func (db *DB) CheckRoom(ctx context.Context) error {
	rm := db.room
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.short == "" {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(db.path), &st); err != nil {
		return fmt.Errorf("check room for the store: %w", err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < 3*rm.size || free < 1<<20 {
		return nil
	}
	if err := rm.take(); err != nil {
		return fmt.Errorf("take the store's reserve back: %w", err)
	}
	// A write proves the store commits again.
	if _, err := db.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('room_checked', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return fmt.Errorf("write to the store: %w", err)
	}
	rm.short = ""
	return nil
}
