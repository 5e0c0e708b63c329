package server_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite"
)

// smallFileSystem mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends; it skips the test unless it runs as root.
func smallFileSystem(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fill writes to path until its file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := 0; i < 1<<12; i++ {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatalf("wrote 4 GiB to %s without filling its file system", path)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFullDiskKeepsTheStoreWriting fills the file system that holds the
// store and the share (as a user's dd would) and checks that the control
// plane says so and keeps the running work correct: the first write that
// finds the disk full fails with 503 saying what to do, the store gives back
// its reserve, /readyz answers 503 with the reason and /healthz degraded,
// reads work, new work is refused with 503, a running job's end still commits, and once room is freed the store takes
// work again, intact.
func TestFullDiskKeepsTheStoreWriting(t *testing.T) {
	dir := smallFileSystem(t, "24m")
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 49500, Dir: dir, Reserve: 4 << 20})
	ctx := context.Background()
	p.WaitReady(dspool.DefaultPool, 1)

	gate := t.TempDir()
	_ = os.Chmod(gate, 0o755)
	waiting := submit(t, p.Admin, dspool.JobSpec{Command: []string{"sh", "-c",
		"while [ ! -e " + gate + "/go ]; do sleep 0.05; done"}})
	p.Eventually(20*time.Second, func() bool {
		j, err := p.Admin.Job(ctx, waiting.ID)
		return err == nil && j.Job.State == dspool.JobRunning
	}, "job %d to run", waiting.ID)

	filler := filepath.Join(p.Share, "fill")
	fill(t, filler)

	// Submissions write until one finds the disk full.
	big := strings.Repeat("x", 64<<10)
	var full error
	for i := 0; i < 1000 && full == nil; i++ {
		_, full = p.Admin.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"echo", big}}, 0)
	}
	if dspool.ErrorCode(full) != dspool.EUnavailable || !strings.Contains(dspool.Message(full), "full") || !strings.Contains(dspool.Message(full), "free room") {
		t.Fatalf("a submission on a full disk: got %v, want unavailable saying the disk is full and what to do", full)
	}
	if code, body := get(t, p.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "full") {
		t.Errorf("/readyz on a full disk: %d %q, want 503 with the reason", code, body)
	}
	if code, body := get(t, p.URL+"/healthz"); code != http.StatusOK || !strings.HasPrefix(body, "degraded: ") {
		t.Errorf("/healthz on a full disk: %d %q, want 200 degraded with the reason", code, body)
	}
	if _, err := p.Admin.Jobs(ctx, api.JobQuery{}); err != nil {
		t.Errorf("job list on a full disk: %v, want it to work", err)
	}
	_, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}}, 0)
	wantCode(t, "a small submission while short of room", err, dspool.EUnavailable, "takes no new work until there is room")

	// The running job's end commits on the reserve.
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if j := p.Wait(p.Admin, waiting.ID); j.State != dspool.JobSucceeded {
		t.Errorf("the running job on a full disk: %s (%s), want succeeded", j.State, j.Message)
	}

	// Room again: the store takes its reserve back and new work.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.Eventually(10*time.Second, func() bool {
		code, _ := get(t, p.URL+"/readyz")
		return code == http.StatusOK
	}, "/readyz to answer 200 once there is room")
	after := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	if j := p.Wait(p.Admin, after.ID); j.State != dspool.JobSucceeded {
		t.Errorf("a job after room was freed: %s (%s), want succeeded", j.State, j.Message)
	}
	if _, err := os.Stat(filepath.Join(dir, "dspool.db.reserve")); err != nil {
		t.Errorf("the store's reserve after room was freed: %v", err)
	}
	checkIntegrity(t, filepath.Join(dir, "dspool.db"))
}

// TestFullShareApartFromTheStore fills a share on a file system of its own:
// the store keeps writing and the control plane stays ready, while the node
// says its share is full and takes no new work until there is room again.
func TestFullShareApartFromTheStore(t *testing.T) {
	share := smallFileSystem(t, "16m")
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 49600, Share: share})
	ctx := context.Background()
	p.WaitReady(dspool.DefaultPool, 1)

	filler := filepath.Join(share, "fill")
	fill(t, filler)
	p.Eventually(10*time.Second, func() bool {
		nodes, err := p.Admin.Nodes(ctx, dspool.DefaultPool)
		return err == nil && len(nodes) == 1 && strings.Contains(nodes[0].Usage.ShareFull(), "the share is full")
	}, "the node to say its share is full")
	if code, body := get(t, p.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a full share apart from the store: %d %q, want 200", code, body)
	}
	queued := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	if j, err := p.Admin.WaitJob(ctx, queued.ID, 2*time.Second); err != nil || j.State != dspool.JobQueued {
		t.Errorf("a job while the only node's share is full: %v, %v; want it queued", j, err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if j := p.Wait(p.Admin, queued.ID); j.State != dspool.JobSucceeded {
		t.Errorf("the queued job once the share has room: %s (%s), want succeeded", j.State, j.Message)
	}
}

func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity check of %s: %q, %v", path, ok, err)
	}
}
