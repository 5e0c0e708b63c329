package server

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func entries(ids ...int64) []*dspool.AuditEntry {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var es []*dspool.AuditEntry
	for _, id := range ids {
		es = append(es, &dspool.AuditEntry{ID: id, At: t0.Add(time.Duration(id) * time.Second), Actor: "ada", Action: dspool.AuditLoginSSH, Outcome: dspool.AuditSuccess})
	}
	return es
}

func exportedIDs(t *testing.T, file string) []int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var e dspool.AuditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// TestExportAuditAfterACrash: a prune cut short after its export exports
// the same entries again, which the file already holds; a crash while
// writing leaves a line cut short, which goes.
func TestExportAuditAfterACrash(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := exportAudit(file, entries(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := exportAudit(file, entries(2, 3, 4, 5)); err != nil {
		t.Fatal(err)
	}
	if got := exportedIDs(t, file); len(got) != 5 || got[0] != 1 || got[4] != 5 {
		t.Fatalf("exported %v, want 1 to 5 once each", got)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"id":6,"at":"2030-01-01T0`)
	f.Close()
	if err := exportAudit(file, entries(6, 7)); err != nil {
		t.Fatal(err)
	}
	if got := exportedIDs(t, file); len(got) != 7 || got[5] != 6 || got[6] != 7 {
		t.Fatalf("exported %v, want 1 to 7 once each", got)
	}
	// A file that is no export is left alone, and says so.
	other := filepath.Join(t.TempDir(), "notes")
	_ = os.WriteFile(other, []byte("my notes\n"), 0o600)
	if err := exportAudit(other, entries(1)); err == nil || !strings.Contains(err.Error(), "no audit entry") {
		t.Errorf("export to a file of notes: %v; want a refusal", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "my notes\n" {
		t.Errorf("the notes became %q", b)
	}
	_ = os.WriteFile(other, []byte("my notes"), 0o600)
	if err := exportAudit(other, entries(1)); err == nil || !strings.Contains(err.Error(), "no audit entry") {
		t.Errorf("export to a file of notes without a newline: %v; want a refusal", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	_ = os.Symlink(other, link)
	if err := exportAudit(link, entries(1)); err == nil {
		t.Error("exported through a link")
	}
}

// FuzzLastExported feeds any end of a file to lastExported: it never
// panics, keeps only whole lines, and what it keeps ends in the entry it
// returns.
func FuzzLastExported(f *testing.F) {
	line, _ := json.Marshal(entries(7)[0])
	for _, s := range []string{"", "\n", string(line) + "\n", string(line), string(line) + "\n" + string(line[:10]), "x\n", "{}\n", "\n\n",
		`{"id":-1,"at":"2030-01-01T00:00:00Z"}` + "\n", `{"id":1,"at":"99999-01-01T00:00:00Z"}` + "\n"} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, tail []byte, whole bool) {
		last, keep, err := lastExported(tail, whole)
		if err != nil {
			if last != nil || keep != 0 {
				t.Fatalf("an error (%v) with an entry %v or bytes kept (%d)", err, last, keep)
			}
			return
		}
		if keep < 0 || keep > len(tail) || keep > 0 && tail[keep-1] != '\n' {
			t.Fatalf("keeps %d of %q: want whole lines", keep, tail)
		}
		if (last == nil) != (keep == 0) {
			t.Fatalf("entry %v with %d bytes kept", last, keep)
		}
		if last != nil && (last.ID <= 0 || !bytes.Contains(tail[:keep], []byte("id"))) {
			t.Fatalf("entry %+v from %q", last, tail)
		}
	})
}
