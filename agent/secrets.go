package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"golang.org/x/sys/unix"
)

// Secrets reach an attempt or a session in the spec the control plane
// sends: as environment variables, and as files in a directory of its own
// under the node's runtime directory (/run/dspool/NODE as root: memory, not
// disk, and never the share). The directory goes when the work ends, and
// whatever an earlier run of the agent left there goes when it starts. The
// agent keeps no value once the work has started, and logs none.

// defaultRuntimeDir is where runtime directories live when Config says
// nothing: /run/dspool as root, else the user's runtime directory, else
// beside the agent's state.
func defaultRuntimeDir(root bool, stateDir string) string {
	switch {
	case root:
		return "/run/dspool"
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		return filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "dspool")
	}
	return filepath.Join(stateDir, "run")
}

// prepareRuntime makes this node's runtime directory (root's, traversable,
// not listable) and empties it of what an earlier run left: the work it
// belonged to died with that run.
func (ag *Agent) prepareRuntime() error {
	base := ag.cfg.RuntimeDir
	if base == "" {
		base = defaultRuntimeDir(ag.root, ag.cfg.StateDir)
	}
	ag.runtime = filepath.Join(base, ag.node)
	// The base is the agent's own directory before anything is mounted
	// on it; then the node's directory in it, on what is mounted.
	if err := ownDir(base); err != nil {
		return err
	}
	if err := ag.inMemory(base); err != nil {
		return err
	}
	if err := ownDir(ag.runtime); err != nil {
		return err
	}
	stale, err := os.ReadDir(ag.runtime)
	if err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	for _, e := range stale {
		if err := os.RemoveAll(filepath.Join(ag.runtime, e.Name())); err != nil {
			return fmt.Errorf("remove stale runtime directory: %w", err)
		}
	}
	if len(stale) > 0 {
		ag.log.Info("removed runtime directories left by an earlier run", "count", len(stale))
	}
	return nil
}

// inMemory makes sure the runtime directory base is in memory, so that
// secret files never reach a disk: an agent running as root mounts a tmpfs
// there when it is not (a host whose /run is on disk); any other agent
// says so.
func (ag *Agent) inMemory(base string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(base, &fs); err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		return nil
	}
	if !ag.root {
		ag.log.Warn("the runtime directory is not in memory: secret files of jobs and sessions are written to disk there; set XDG_RUNTIME_DIR to a tmpfs", "dir", base)
		return nil
	}
	err := unix.Mount("dspool-run", base, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711,size=64m")
	if err != nil {
		return fmt.Errorf("runtime directory %s is not in memory, and mounting a tmpfs there failed: %w (mount one, or give --runtime-dir on a tmpfs)", base, err)
	}
	ag.log.Info("mounted a tmpfs for secret files: the runtime directory was on disk", "dir", base)
	return nil
}

// ownDir makes d (0711) and checks that it is a directory of this
// process's user, not a link to one.
func ownDir(d string) error {
	if err := os.MkdirAll(d, 0o711); err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	st, err := os.Lstat(d)
	if err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	if sys, ok := st.Sys().(*unix.Stat_t); !st.IsDir() || ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("runtime directory %s is not a directory of this agent's user", d)
	}
	if err := os.Chmod(d, 0o711); err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	return nil
}

// secretEnv returns the environment entries of the secrets that go into
// variables.
func secretEnv(vals []api.SecretValue) ([]string, error) {
	var env []string
	for _, v := range vals {
		if v.File != "" {
			continue
		}
		if err := dspool.ValidateSecretEnv("env", v.Env); err != nil {
			return nil, fmt.Errorf("secret %s: %v", v.Secret, err)
		}
		for _, c := range v.Value {
			if c == 0 {
				return nil, fmt.Errorf("secret %s holds a NUL byte, which an environment variable cannot", v.Secret)
			}
		}
		env = append(env, v.Env+"="+string(v.Value))
	}
	return env, nil
}

func hasSecretFiles(vals []api.SecretValue) bool {
	for _, v := range vals {
		if v.File != "" {
			return true
		}
	}
	return false
}

func wipeSecrets(vals []api.SecretValue) {
	for i := range vals {
		clear(vals[i].Value)
		vals[i].Value = nil
	}
}

// writeSecrets makes the runtime directory name (the user's, 0700) with
// a directory secrets in it (the user's, 0700) holding a file of each
// secret that goes into one (the user's, 0400), and returns the path of
// secrets. Everything is made through directory handles, as the agent's
// user, without following links, and given to the user only once
// written: nothing of the user's can redirect a write.
func (ag *Agent) writeSecrets(name string, uid, gid int, vals []api.SecretValue) (dir string, err error) {
	if ag.runtime == "" {
		return "", errors.New("no runtime directory for secrets")
	}
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return "", fmt.Errorf("bad runtime directory name %q", name)
	}
	path := filepath.Join(ag.runtime, name)
	if err := os.RemoveAll(path); err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(path)
			err = fmt.Errorf("write secrets: %w", err)
		}
	}()
	root, err := unix.Open(ag.runtime, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(root)
	own, err := mkdirAt(root, name)
	if err != nil {
		return "", err
	}
	defer unix.Close(own)
	sec, err := mkdirAt(own, "secrets")
	if err != nil {
		return "", err
	}
	defer unix.Close(sec)
	for _, v := range vals {
		if v.File == "" {
			continue
		}
		if err := dspool.ValidateSecretName("file", v.File); err != nil {
			return "", err
		}
		if err := writeAt(sec, v.File, v.Value, uid, gid); err != nil {
			return "", fmt.Errorf("secret %s: %w", v.Secret, err)
		}
	}
	for _, fd := range []int{sec, own} {
		if uid >= 0 {
			if err := unix.Fchown(fd, uid, gid); err != nil {
				return "", err
			}
		}
	}
	return filepath.Join(path, "secrets"), nil
}

// mkdirAt makes the directory name (0700) in the directory dirfd and
// opens it.
func mkdirAt(dirfd int, name string) (int, error) {
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
		return -1, fmt.Errorf("mkdir %s: %w", name, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", name, err)
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// writeAt creates the file name (0400, uid's) in dirfd holding b.
func writeAt(dirfd int, name string, b []byte, uid, gid int) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	return f.Chmod(0o400)
}

// removeRuntime removes the runtime directory name and all in it, without
// following the links its user may have made there.
func (ag *Agent) removeRuntime(name string) {
	if ag.runtime == "" || name == "" {
		return
	}
	if err := os.RemoveAll(filepath.Join(ag.runtime, name)); err != nil {
		ag.log.Warn("remove runtime directory", "dir", name, "err", err)
	}
}
