package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/dspool/dspool"
)

// The audit export: entries leave the store only once they are in this
// file, one JSON object a line (dspool.AuditEntry), synced. A prune cut
// short between the export and the delete exports the same entries
// again at the next prune: they are skipped, since the file's last line
// says how far it goes. A last line cut short by a crash is cut off first.

// exportTail is how much of the file's end is read to find its last entry:
// more than the longest entry (AddAudit cuts its fields).
const exportTail = 64 << 10

// exportAudit appends es (in the order store.OldAudit gives them) to
// file, and syncs it.
func exportAudit(file string, es []*dspool.AuditEntry) error {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("audit export: %s is not a regular file", file)
	}
	size := fi.Size()
	tail := make([]byte, min(size, exportTail))
	if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("audit export: %w", err)
	}
	last, keep, err := lastExported(tail, int64(len(tail)) == size)
	if err != nil {
		return fmt.Errorf("audit export %s: %w: move it away, or mend its end, and entries are exported again", file, err)
	}
	if cut := int64(len(tail) - keep); cut > 0 {
		size -= cut
		if err := f.Truncate(size); err != nil {
			return fmt.Errorf("audit export: cut off its last line, which a crash left short: %w", err)
		}
	}
	var buf bytes.Buffer
	for _, e := range es {
		if last != nil && !e.At.After(last.At) && !(e.At.Equal(last.At) && e.ID > last.ID) {
			continue // exported by a prune cut short
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if _, err := f.WriteAt(buf.Bytes(), size); err != nil {
		return fmt.Errorf("audit export %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit export %s: %w", file, err)
	}
	return nil
}

// lastExported reads the end of an audit export: the entry on its last
// whole line (nil for an empty file), and how many bytes of tail to keep:
// a last line without its newline is not kept. whole says that tail is the
// whole file; otherwise it must hold one whole line.
func lastExported(tail []byte, whole bool) (*dspool.AuditEntry, int, error) {
	end := bytes.LastIndexByte(tail, '\n')
	if end < 0 {
		if !whole {
			return nil, 0, fmt.Errorf("its last %d bytes hold no whole line: it is no audit export", len(tail))
		}
		if len(tail) > 0 && !bytes.HasPrefix(tail, []byte(`{"id":`)) {
			return nil, 0, errors.New("it holds no audit entry")
		}
		return nil, 0, nil // empty, or one entry cut short
	}
	start := bytes.LastIndexByte(tail[:end], '\n') + 1
	if start == 0 && !whole {
		return nil, 0, fmt.Errorf("its last line is longer than %d bytes: it is no audit export", len(tail))
	}
	var e dspool.AuditEntry
	if err := json.Unmarshal(tail[start:end], &e); err != nil || e.ID <= 0 || e.At.IsZero() || e.At.After(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)) {
		return nil, 0, errors.New("its last line is no audit entry")
	}
	return &e, end + 1, nil
}
