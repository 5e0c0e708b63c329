package share_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool/share"
	"golang.org/x/sys/unix"
)

// user is the account the tests' files belong to: a stranger's ids as
// root, so that the kernel's checks of As are real; the test's own
// otherwise.
func user(t testing.TB) share.Owner {
	if os.Geteuid() == 0 {
		return share.Owner{UID: 23456, GID: 23456}
	}
	return share.Self()
}

// setup makes a share root with jobs/1 (the user's) holding the regular
// file ok.log, and a canary that only root may read, outside the share.
func setup(t testing.TB) (root, canary string, o share.Owner) {
	t.Helper()
	dir := t.TempDir()
	// Users reach the share through its parents, as on a node.
	must(t, os.Chmod(filepath.Dir(dir), 0o711))
	must(t, os.Chmod(dir, 0o711))
	root = filepath.Join(dir, "share")
	o = user(t)
	must(t, os.Mkdir(root, 0o755))
	if err := share.MkdirAll(root, "jobs/1", share.Self(), 0o755); err != nil {
		t.Fatal(err)
	}
	must(t, os.Chown(filepath.Join(root, "jobs/1"), o.UID, o.GID))
	must(t, os.Chmod(filepath.Join(root, "jobs/1"), 0o750))
	write(t, filepath.Join(root, "jobs/1/ok.log"), "ok\n", o)
	canary = filepath.Join(dir, "canary")
	must(t, os.WriteFile(canary, []byte("CANARY\n"), 0o600))
	return root, canary, o
}

func write(t testing.TB, path, s string, o share.Owner) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(s), 0o640))
	must(t, os.Chown(path, o.UID, o.GID))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesWhatAUserCanPlant(t *testing.T) {
	root, canary, o := setup(t)
	job := filepath.Join(root, "jobs/1")
	must(t, os.Symlink(canary, filepath.Join(job, "link.log")))
	must(t, unix.Mkfifo(filepath.Join(job, "fifo.log"), 0o666))
	must(t, os.Chown(filepath.Join(job, "fifo.log"), o.UID, o.GID))
	must(t, os.Mkdir(filepath.Join(job, "dir.log"), 0o755))
	write(t, filepath.Join(job, "two.log"), "two\n", o)
	must(t, os.Link(filepath.Join(job, "two.log"), filepath.Join(job, "two-again.log")))
	must(t, os.WriteFile(filepath.Join(job, "roots.log"), []byte("root's\n"), 0o644))
	// A directory component that is a link: jobs/2 -> jobs/1.
	must(t, os.Symlink("1", filepath.Join(root, "jobs/2")))
	must(t, os.Symlink(filepath.Dir(canary), filepath.Join(job, "up")))
	tests := []struct {
		name, rel, want string
	}{
		{"symlink", "jobs/1/link.log", "is a symlink"},
		{"fifo", "jobs/1/fifo.log", "is a FIFO"},
		{"directory", "jobs/1/dir.log", "is a directory"},
		{"hard link", "jobs/1/two.log", "has 2 hard links"},
		{"symlinked directory", "jobs/2/ok.log", "symlink"},
		{"symlink inside", "jobs/1/up/canary", "symlink"},
	}
	if os.Geteuid() == 0 {
		must(t, unix.Mknod(filepath.Join(job, "dev.log"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, os.Chown(filepath.Join(job, "dev.log"), o.UID, o.GID))
		tests = append(tests, []struct{ name, rel, want string }{
			{"device", "jobs/1/dev.log", "is a character device"},
			{"another owner", "jobs/1/roots.log", "belongs to uid"},
		}...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			f, err := share.Open(root, tt.rel, o)
			if err == nil {
				f.Close()
				t.Fatalf("Open(%s) succeeded; want it refused", tt.rel)
			}
			if !errors.Is(err, share.ErrUnsafe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open(%s) = %v; want ErrUnsafe saying %q", tt.rel, err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Open(%s) took %s: it waited on something", tt.rel, d)
			}
			f, err = share.OpenFile(root, tt.rel, o, 0o640)
			if err == nil {
				f.Close()
				t.Fatalf("OpenFile(%s) succeeded; want it refused", tt.rel)
			}
		})
	}
	b, err := os.ReadFile(canary)
	if err != nil || string(b) != "CANARY\n" {
		t.Fatalf("canary changed: %q, %v", b, err)
	}
}

func TestOpenReadsTheUsersOwnFile(t *testing.T) {
	root, _, o := setup(t)
	f, err := share.Open(root, "jobs/1/ok.log", o)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if string(b) != "ok\n" {
		t.Fatalf("read %q; want %q", b, "ok\n")
	}
	if _, err := share.Open(root, "jobs/1/missing.log", o); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v; want os.ErrNotExist", err)
	}
	for _, rel := range []string{"/etc/passwd", "../x", "jobs/../../x", "jobs//1", ""} {
		if _, err := share.Open(root, rel, o); err == nil {
			t.Fatalf("Open(%q) succeeded; want it refused", rel)
		}
	}
}

func TestOpenFileCreatesAsTheUserAndAppends(t *testing.T) {
	root, _, o := setup(t)
	for i, want := range []string{"a\n", "a\nb\n"} {
		err := share.As(o.UID, o.GID, func() error {
			f, err := share.OpenFile(root, "jobs/1/new.log", o, 0o640)
			if err != nil {
				return err
			}
			_, err = f.WriteString(want[len(want)-2:])
			f.Close()
			return err
		})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		b, _ := os.ReadFile(filepath.Join(root, "jobs/1/new.log"))
		if string(b) != want {
			t.Fatalf("after write %d: %q; want %q", i, b, want)
		}
	}
	st, err := os.Stat(filepath.Join(root, "jobs/1/new.log"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != o.UID || int(sys.Gid) != o.GID || st.Mode().Perm() != 0o640 {
		t.Fatalf("new.log is %d:%d %v; want %d:%d -rw-r-----", sys.Uid, sys.Gid, st.Mode().Perm(), o.UID, o.GID)
	}
}

func TestAsActsWithTheUsersRights(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("acting as another user needs root")
	}
	root, canary, o := setup(t)
	err := share.As(o.UID, o.GID, func() error {
		_, err := os.ReadFile(canary)
		return err
	})
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("reading root's 0600 file as uid %d: %v; want permission denied", o.UID, err)
	}
	// A directory the user may not write: root's jobs/.
	err = share.As(o.UID, o.GID, func() error { return share.MkdirAll(root, "jobs/9", o, 0o750) })
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("mkdir in root's jobs/ as uid %d: %v; want permission denied", o.UID, err)
	}
	// Threads go back to the runtime as root: many calls at once, and root
	// still reads its file from every goroutine.
	var wg sync.WaitGroup
	var fails atomic.Int32
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 200 {
				_ = share.As(o.UID, o.GID, func() error { return nil })
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := os.ReadFile(canary); err != nil {
					fails.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := fails.Load(); n > 0 {
		t.Fatalf("root could not read its own file %d times while others acted as a user", n)
	}
}

// TestRenameRace swaps the log between the user's regular file and a
// symlink to root's canary as fast as it can while Open reads it: the
// canary is never read.
func TestRenameRace(t *testing.T) {
	root, canary, o := setup(t)
	job := filepath.Join(root, "jobs/1")
	must(t, os.Symlink(canary, filepath.Join(job, "evil")))
	swaps := 100_000
	if testing.Short() {
		swaps = 10_000
	}
	deadline := time.Now().Add(60 * time.Second)
	var done atomic.Bool
	var n atomic.Int64
	go func() {
		defer done.Store(true)
		for i := 0; i < swaps && time.Now().Before(deadline); i++ {
			// Exchange the two names atomically: log is the file, then the link.
			if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(job, "ok.log"), unix.AT_FDCWD, filepath.Join(job, "evil"), unix.RENAME_EXCHANGE); err != nil {
				t.Error(err)
				return
			}
			n.Add(1)
		}
	}()
	var reads, refused int
	buf := make([]byte, 64)
	for !done.Load() {
		err := share.As(o.UID, o.GID, func() error {
			f, err := share.Open(root, "jobs/1/ok.log", o)
			if err != nil {
				return err
			}
			defer f.Close()
			m, _ := f.Read(buf)
			if strings.Contains(string(buf[:m]), "CANARY") {
				t.Errorf("read the canary through a swapped log")
			}
			return nil
		})
		if err == nil {
			reads++
		} else if errors.Is(err, share.ErrUnsafe) {
			refused++
		} else {
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if got := n.Load(); got < int64(swaps) {
		t.Fatalf("only %d of %d swaps before the deadline", got, swaps)
	}
	if reads == 0 || refused == 0 {
		t.Fatalf("reads %d, refused %d: the race did not exercise both sides", reads, refused)
	}
	t.Logf("%d swaps; %d reads of the file, %d refusals of the link", n.Load(), reads, refused)
}

// FuzzOpen: whatever path a user gets dspool to ask for, Open returns only
// a regular file of the owner inside the share, never what a link points
// to.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{"jobs/1/ok.log", "jobs/1/link.log", "jobs/2/ok.log", "../canary", "/etc/passwd",
		"jobs/1/../1/ok.log", "jobs/1/ok.log/", "jobs//1/ok.log", "./jobs/1/ok.log", "jobs/1/up/canary", "\x00", "jobs/1/fifo"} {
		f.Add(s)
	}
	root, canary, o := setup(f)
	job := filepath.Join(root, "jobs/1")
	must(f, os.Symlink(canary, filepath.Join(job, "link.log")))
	must(f, os.Symlink("1", filepath.Join(root, "jobs/2")))
	must(f, os.Symlink(filepath.Dir(canary), filepath.Join(job, "up")))
	must(f, unix.Mkfifo(filepath.Join(job, "fifo"), 0o666))
	ok, err := share.Open(root, "jobs/1/ok.log", o)
	if err != nil {
		f.Fatalf("the one readable file: %v", err)
	}
	ok.Close()
	f.Fuzz(func(t *testing.T, rel string) {
		f, err := share.Open(root, rel, o)
		if err != nil {
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		if string(b) != "ok\n" {
			t.Fatalf("Open(%q) read %q; only jobs/1/ok.log may be read", rel, b)
		}
	})
}

// TestUserDirHandsOverWhatRootMadeFirst: a job directory that another
// process made and has not handed over yet (or a crash left so) is handed
// to its user, not used as root's.
func TestUserDirHandsOverWhatRootMadeFirst(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "jobs", "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := share.Owner{UID: 5000, GID: 5000}
	if err := share.UserDir(root, "jobs/7", o, 0o750); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "jobs", "7"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != 5000 || st.Mode().Perm() != 0o750 {
		t.Fatalf("jobs/7: %v %v, want uid 5000 and mode 0750", st.Mode(), err)
	}
	if st, _ := os.Stat(filepath.Join(root, "jobs")); st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatal("the parent jobs/ was handed over too")
	}
	// A user's own directory is left as it is.
	if err := os.Chmod(filepath.Join(root, "jobs", "7"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := share.UserDir(root, "jobs/7", o, 0o750); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(root, "jobs", "7")); st.Mode().Perm() != 0o700 {
		t.Fatalf("a user's directory changed mode to %v", st.Mode().Perm())
	}
}

// TestUserDirIsNeverRootsOnTheWay: a job directory the control plane makes
// for a user is never seen root's: the user (or the control plane reading
// a log as the user) finds it missing, or theirs, never forbidden.
func TestUserDirIsNeverRootsOnTheWay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a directory for another user needs root")
	}
	root, _, o := setup(t)
	if err := share.MkdirAll(root, "jobs", share.Self(), 0o755); err != nil {
		t.Fatal(err)
	}
	const dirs = 300
	var denied atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i = (i + 1) % dirs {
			select {
			case <-stop:
				return
			default:
			}
			_ = share.As(o.UID, o.GID, func() error {
				f, err := share.Open(root, fmt.Sprintf("jobs/%d/attempt-1.log", i), o)
				if errors.Is(err, os.ErrPermission) {
					denied.Add(1)
				}
				if f != nil {
					f.Close()
				}
				return nil
			})
		}
	}()
	for i := range dirs {
		if err := share.UserDir(root, fmt.Sprintf("jobs/%d", i), o, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := denied.Load(); n > 0 {
		t.Errorf("reading in a job directory as its user was refused %d times while the directories were made", n)
	}
	st, err := os.Stat(filepath.Join(root, "jobs", "7"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(o.UID) || st.Mode().Perm() != 0o750 {
		t.Errorf("jobs/7: %v %v, want the user's, 0750", st, err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "jobs", ".dspool-new-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
