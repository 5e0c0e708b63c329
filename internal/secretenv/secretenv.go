// Package secretenv keeps secrets given in the environment (the key that
// seals secrets, a join token, a client secret) out of the process's
// environment block, which /proc/PID/environ shows for the whole life of
// the process whatever os.Unsetenv does. Hide re-executes the program
// without them and hands their values over a sealed memory file; Pass gives
// a child process values the same way, so they never enter its environment
// at all. It must never write a value anywhere but such a file.
package secretenv

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdVar names the descriptor that holds the values: a number, no secret.
const fdVar = "DSPOOL_SECRET_ENV_FD"

// Hide returns the values of names, taken from the file a parent handed
// over and from the environment. When the environment holds any of them,
// Hide first re-executes the program (same binary, same arguments) with an
// environment without them: it returns only in a process whose environment
// block holds none of names.
func Hide(names []string) (map[string]string, error) {
	vals, err := inherited()
	if err != nil {
		return nil, err
	}
	found := false
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			vals[n] = v
			found = true
		}
	}
	if !found {
		return vals, nil
	}
	fd, err := memfd(vals)
	if err != nil {
		return nil, err
	}
	env := []string{fdVar + "=" + strconv.Itoa(fd)}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != fdVar && !contains(names, k) {
			env = append(env, kv)
		}
	}
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	unix.Close(fd)
	return nil, fmt.Errorf("re-execute without secrets in the environment: %w", err)
}

// Pass makes cmd's process find vals through Hide, without them in its
// environment: a sealed memory file it inherits. The caller closes the file
// returned once cmd has started.
func Pass(cmd *exec.Cmd, vals map[string]string) (*os.File, error) {
	fd, err := memfd(vals)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "secret-env")
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// ExtraFiles[i] is descriptor 3+i in the child.
	cmd.Env = append(cmd.Env, fdVar+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	return f, nil
}

// memfd writes vals to a new sealed memory file, left open across exec.
func memfd(vals map[string]string) (int, error) {
	fd, err := unix.MemfdCreate("dspool-secret-env", unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("hand secrets over: %w", err)
	}
	b, _ := json.Marshal(vals)
	f := os.NewFile(uintptr(fd), "secret-env")
	_, err = f.Write(b)
	clear(b)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
	}
	if err == nil {
		_, err = unix.Seek(fd, 0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return -1, fmt.Errorf("hand secrets over: %w", err)
	}
	// The *os.File must not close fd when collected.
	nfd, err := unix.Dup(fd)
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("hand secrets over: %w", err)
	}
	return nfd, nil
}

// inherited reads and closes the file a parent handed over, if any.
func inherited() (map[string]string, error) {
	vals := map[string]string{}
	s, ok := os.LookupEnv(fdVar)
	if !ok {
		return vals, nil
	}
	os.Unsetenv(fdVar)
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor", fdVar, s)
	}
	f := os.NewFile(uintptr(fd), "secret-env")
	defer f.Close()
	if seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil || seals&unix.F_SEAL_WRITE == 0 {
		return nil, fmt.Errorf("%s=%d is not a sealed memory file", fdVar, fd)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read secrets handed over: %w", err)
	}
	defer clear(b)
	if err := json.Unmarshal(b, &vals); err != nil {
		return nil, fmt.Errorf("read secrets handed over: %w", err)
	}
	return vals, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
