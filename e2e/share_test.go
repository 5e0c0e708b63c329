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

// TestOneShareOneStore: a new store is refused another store's share, with
// a message that says what to give instead, and the store that owns the
// share still starts on it.
func TestOneShareOneStore(t *testing.T) {
	first := startUp(t, upConfig{UIDBase: uidBase(50)})
	first.Stop()
	data := filepath.Join(tempDir(t), "second")
	out, errs, code := cli(t, []string{"DSPOOL_CONFIG=" + filepath.Join(data+"-login", "login.json")},
		"up", "--data", data, "--share", first.Share, "--listen", "127.0.0.1:0", "--ssh-listen", "off", "--admin", "e2eshare50", "--uid-base", itoa(int64(uidBase(50)+50)))
	if code == 0 || !strings.Contains(errs, first.Share+" is already the share of another store") || !strings.Contains(errs, "--share DIR") {
		t.Fatalf("dspool up of a new store on another store's share: exit %d, stdout %q, stderr %q; want a refusal saying to give it its own share", code, out, errs)
	}
	again := startUp(t, upConfig{Data: first.Data})
	if again.Share != first.Share {
		t.Fatalf("the first store came back with share %s, want %s", again.Share, first.Share)
	}
}
