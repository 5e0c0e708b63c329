package server

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
)

// Backups through the API (docs/decisions/0020): the store copies one
// moment of itself into a file beside it (VACUUM INTO, which the writer
// does not wait for), and the file is sent and removed. One at a time (the
// next waits); a copy that a crash left behind goes with the next.

// backups lets one backup run at a time; the next waits for it.
type backups struct {
	once sync.Once
	sem  chan struct{}
}

func (b *backups) acquire(r *http.Request) error {
	b.once.Do(func() { b.sem = make(chan struct{}, 1) })
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

func (b *backups) release() { <-b.sem }

// backupSuffix names the copies beside the store.
const backupSuffix = ".backup-"

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if err := s.backups.acquire(r); err != nil {
		return // the caller left
	}
	defer s.backups.release()
	if s.db.Postgres() {
		s.fail(w, r, dspool.Errorf(dspool.EInvalid, "the store is a PostgreSQL database, which dspool backup does not copy: back it up with pg_dump --format=custom (docs/guide.md, \"Backup and restore\"), with DATA's keys beside it"))
		return
	}
	store := s.db.Path()
	dir := filepath.Dir(store)
	stale, _ := filepath.Glob(store + backupSuffix + "*")
	for _, f := range stale {
		_ = os.Remove(f)
	}
	if err := roomForCopy(store); err != nil {
		s.fail(w, r, err)
		return
	}
	f, err := os.CreateTemp(dir, filepath.Base(store)+backupSuffix+"*")
	if err != nil {
		s.fail(w, r, fmt.Errorf("back up the store: %w", err))
		return
	}
	name := f.Name()
	f.Close()
	// An open file is read to its end after it is unlinked: nothing stays
	// on the disk once the answer is sent, whatever happens to it.
	defer os.Remove(name)
	if err := s.db.Backup(r.Context(), name); err != nil {
		s.audit(r, "", dspool.AuditStoreBackup, "store", dspool.AuditFailure, err.Error())
		s.fail(w, r, err)
		return
	}
	if f, err = os.Open(name); err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	os.Remove(name)
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	at := s.cfg.Now().UTC().Format("20060102T150405Z")
	w.Header().Set("Content-Type", "application/vnd.sqlite3")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.Header().Set("Content-Disposition", `attachment; filename="dspool-`+at+`.db"`)
	n, err := io.Copy(w, f)
	if err != nil {
		s.audit(r, "", dspool.AuditStoreBackup, "store", dspool.AuditFailure, fmt.Sprintf("sent %d of %d bytes: %v", n, fi.Size(), err))
		return
	}
	s.log.Info("store backed up", "by", userFrom(r).Name, "bytes", n)
	s.audit(r, "", dspool.AuditStoreBackup, "store", dspool.AuditSuccess, fmt.Sprintf("%d bytes", n))
}

// roomForCopy refuses a backup that would take the store's disk below
// twice the store's size free: the copy is at most the store's size, and
// the store must go on growing meanwhile.
func roomForCopy(store string) error {
	fi, err := os.Stat(store)
	if err != nil {
		return fmt.Errorf("back up the store: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(store), &st); err != nil {
		return nil // the copy finds out for itself
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need := 2*fi.Size() + 64<<20; free < need {
		return dspool.Errorf(dspool.EUnavailable, "the store's disk (%s) has %s free, and a copy of the store (%s) needs about %s: free room on it, or stop the control plane and back up with --data",
			filepath.Dir(store), dspool.Bytes(free), dspool.Bytes(fi.Size()), dspool.Bytes(need))
	}
	return nil
}
