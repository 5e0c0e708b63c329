package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dspool/dspool/api"
	"golang.org/x/sys/unix"
)

func testAgent(t *testing.T) *Agent {
	t.Helper()
	run := filepath.Join(t.TempDir(), "run")
	// As root the agent mounts a tmpfs there (the temporary directory is
	// on disk here): it goes before the directory does.
	t.Cleanup(func() { _ = unix.Unmount(run, unix.MNT_DETACH) })
	return &Agent{cfg: Config{RuntimeDir: run, StateDir: t.TempDir()}, node: "n-test",
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), root: os.Geteuid() == 0}
}

func TestSecretFilesAreInMemory(t *testing.T) {
	ag := testAgent(t)
	if err := ag.prepareRuntime(); err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(ag.runtime, &fs); err != nil {
		t.Fatal(err)
	}
	inMemory := fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC
	if os.Geteuid() == 0 && !inMemory {
		t.Fatalf("the runtime directory %s is on a file system of type %#x, not in memory", ag.runtime, fs.Type)
	}
	// A second agent on the same host finds the tmpfs and mounts no other.
	again := &Agent{cfg: ag.cfg, node: "n-other", log: ag.log, root: ag.root}
	if err := again.prepareRuntime(); err != nil {
		t.Fatal(err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if n := strings.Count(string(mounts), " "+ag.cfg.RuntimeDir+" "); os.Geteuid() == 0 && n != 1 {
		t.Fatalf("%s is mounted %d times; want once", ag.cfg.RuntimeDir, n)
	}
}

// owner returns the uid and permission bits of path, without following a
// link.
func owner(t *testing.T, path string) (int, os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Sys().(*syscall.Stat_t).Uid), st.Mode().Perm()
}

func TestWriteSecrets(t *testing.T) {
	ag := testAgent(t)
	if err := ag.prepareRuntime(); err != nil {
		t.Fatal(err)
	}
	uid, gid := -1, -1
	want := os.Geteuid()
	if os.Geteuid() == 0 {
		uid, gid, want = 65534, 65534, 65534
	}
	// Whatever sits at the attempt's name is replaced, never followed.
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(ag.runtime, "j1-a1")); err != nil {
		t.Fatal(err)
	}
	vals := []api.SecretValue{{Secret: "k", Env: "K", Value: []byte("in env")}, {Secret: "ml/key", File: "key", Value: []byte("in a file")}}
	dir, err := ag.writeSecrets("j1-a1", uid, gid, vals)
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(ag.runtime, "j1-a1", "secrets") {
		t.Errorf("dir %s", dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "key")); err != nil || string(b) != "in a file" {
		t.Errorf("file: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the secrets directory holds %d entries, want the one file", len(entries))
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("a write followed the link planted at the attempt's name")
	}
	for path, mode := range map[string]os.FileMode{filepath.Join(dir, "key"): 0o400, dir: 0o700, filepath.Dir(dir): 0o700} {
		if u, m := owner(t, path); u != want || m != mode {
			t.Errorf("%s: uid %d mode %04o, want %d %04o", path, u, m, want, mode)
		}
	}
	if u, m := owner(t, ag.runtime); u != os.Geteuid() || m != 0o711 {
		t.Errorf("runtime directory: uid %d mode %04o, want this process's, 0711", u, m)
	}
	// The user's links inside are removed, not followed.
	target := filepath.Join(elsewhere, "keep")
	if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(filepath.Dir(dir), "link")); err != nil {
		t.Fatal(err)
	}
	ag.removeRuntime("j1-a1")
	if _, err := os.Lstat(filepath.Dir(dir)); !os.IsNotExist(err) {
		t.Errorf("attempt directory after removal: %v", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("removal followed a link: %v", err)
	}

	t.Run("a bad file name", func(t *testing.T) {
		_, err := ag.writeSecrets("j2-a1", uid, gid, []api.SecretValue{{Secret: "x", File: "../x", Value: []byte("v")}})
		if err == nil {
			t.Fatal("wrote a secret named ../x")
		}
		if _, err := os.Lstat(filepath.Join(ag.runtime, "j2-a1")); !os.IsNotExist(err) {
			t.Errorf("a failed write left its directory: %v", err)
		}
	})
	t.Run("a restart removes what the last run left", func(t *testing.T) {
		if _, err := ag.writeSecrets("j3-a1", uid, gid, vals); err != nil {
			t.Fatal(err)
		}
		if err := ag.prepareRuntime(); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(ag.runtime); len(entries) != 0 {
			t.Errorf("runtime directory after a restart holds %d entries", len(entries))
		}
	})
}

func TestSecretEnv(t *testing.T) {
	env, err := secretEnv([]api.SecretValue{{Secret: "a", Env: "A", Value: []byte("1")}, {Secret: "b", File: "b", Value: []byte("2")}})
	if err != nil || len(env) != 1 || env[0] != "A=1" {
		t.Errorf("got %q %v", env, err)
	}
	for _, bad := range []api.SecretValue{{Secret: "a", Env: "LD_PRELOAD", Value: []byte("x")}, {Secret: "a", Env: "A", Value: []byte("x\x00y")}} {
		if _, err := secretEnv([]api.SecretValue{bad}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
