package e2e_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShareBesideTheStore: `dspool up` keeps the share beside its data
// directory, not in it, keeps a reserve for the store and answers /readyz;
// a data directory whose share an earlier dspool made inside it, with
// files, keeps that share and says so at start.
func TestShareBesideTheStore(t *testing.T) {
	t.Run("new installation", func(t *testing.T) {
		up := startUp(t, upConfig{UIDBase: uidBase(48)})
		if up.Share != up.Data+"-share" {
			t.Fatalf("test setup: share %s", up.Share)
		}
		for _, d := range []string{"home", "jobs"} {
			if _, err := os.Stat(filepath.Join(up.Share, d)); err != nil {
				t.Errorf("the share beside the data directory: %v", err)
			}
		}
		if _, err := os.Stat(filepath.Join(up.Data, "share")); !os.IsNotExist(err) {
			t.Errorf("a share inside the data directory: %v, want none", err)
		}
		if fi, err := os.Stat(filepath.Join(up.Data, "dspool.db.reserve")); err != nil || fi.Size() != 64<<20 {
			t.Errorf("the store's reserve: %v, %v; want 64 MiB", fi, err)
		}
		if out, _ := os.ReadFile(up.stdout); !strings.Contains(string(out), "share: "+up.Share) {
			t.Errorf("dspool up does not name the share %s:\n%s", up.Share, out)
		}
		resp, err := http.Get(up.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Errorf("/readyz: %d %q, want 200 ok", resp.StatusCode, body)
		}
	})

	t.Run("share inside from an earlier dspool", func(t *testing.T) {
		data := filepath.Join(tempDir(t), "data")
		legacy := filepath.Join(data, "share")
		if err := os.MkdirAll(filepath.Join(legacy, "home"), 0o755); err != nil {
			t.Fatal(err)
		}
		up := startUp(t, upConfig{UIDBase: uidBase(49), Data: data})
		errs, _ := os.ReadFile(up.stderr)
		if !strings.Contains(string(errs), "note: the share is "+legacy+", inside the data directory") {
			t.Errorf("dspool up on an old layout does not say where the share is:\n%s", errs)
		}
		if out, _ := os.ReadFile(up.stdout); !strings.Contains(string(out), "share: "+legacy) {
			t.Errorf("dspool up on an old layout does not keep its share %s:\n%s", legacy, out)
		}
		if _, err := os.Stat(data + "-share"); !os.IsNotExist(err) {
			t.Errorf("a new share beside an old one: %v, want none", err)
		}
	})
}
