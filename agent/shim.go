package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ShimArg is the first argument that makes the dspool binary act as the
// exec shim instead of the CLI. cmd/dspool checks for it before anything
// else.
const ShimArg = "__dspool_exec"

// shimConfig travels to the shim on fd 3, so nothing of it shows in ps.
type shimConfig struct {
	Procs []string `json:"procs,omitempty"` // cgroup.procs files to join
	UID   int      `json:"uid"`             // -1: keep the agent's
	GID   int      `json:"gid"`
	Dir   string   `json:"dir"`
	Argv  []string `json:"argv"`
}

// RunShim is the shim's whole life: join the attempt's cgroups (so every
// descendant is accounted and killable), forbid privilege gain, drop to the
// user, enter the working directory and exec the command. Any failure is
// written to fd 4 (closed on a successful exec) and the shim exits 127, so
// the agent can tell a start error from the command's own failure.
func RunShim() {
	errf := os.NewFile(4, "start-error")
	fail := func(format string, args ...any) {
		fmt.Fprintf(errf, format, args...)
		os.Exit(127)
	}
	cfgf := os.NewFile(3, "config")
	var cfg shimConfig
	if err := json.NewDecoder(cfgf).Decode(&cfg); err != nil {
		fail("read shim config: %v", err)
	}
	cfgf.Close()
	unix.CloseOnExec(4)
	pid := strconv.Itoa(os.Getpid())
	for _, p := range cfg.Procs {
		if err := os.WriteFile(p, []byte(pid), 0); err != nil {
			fail("join cgroup %s: %v", filepath.Dir(p), err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("set no_new_privs: %v", err)
	}
	if cfg.UID >= 0 {
		if err := syscall.Setgroups([]int{cfg.GID}); err != nil {
			fail("set groups: %v", err)
		}
		if err := syscall.Setgid(cfg.GID); err != nil {
			fail("set gid %d: %v", cfg.GID, err)
		}
		if err := syscall.Setuid(cfg.UID); err != nil {
			fail("set uid %d: %v", cfg.UID, err)
		}
	}
	// A change of credentials clears the parent-death signal: set it again
	// so the job dies with its agent rather than running unaccounted.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	if err := os.Chdir(cfg.Dir); err != nil {
		fail("enter working directory: %v", err)
	}
	if len(cfg.Argv) == 0 {
		fail("empty command")
	}
	path := cfg.Argv[0]
	if !strings.Contains(path, "/") {
		p, err := lookPath(path)
		if err != nil {
			fail("%s: command not found in PATH=%s", path, os.Getenv("PATH"))
		}
		path = p
	}
	err := syscall.Exec(path, cfg.Argv, os.Environ())
	fail("exec %s: %v", cfg.Argv[0], err)
}

func lookPath(file string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}
