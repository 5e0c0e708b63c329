package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// spawn starts cmd so that the new process is in the attempt's cgroup from
// its first instruction and can never gain privileges, without an
// intermediate exec. It forks from an OS thread locked for the purpose,
// which first sets no_new_privs (a per-thread flag the child inherits) and,
// on cgroup v1, joins the attempt's cgroups (v1 lets one thread move alone,
// and a child is born in its forking thread's cgroups); on cgroup v2 the
// kernel places the child directly (clone3 with CLONE_INTO_CGROUP).
//
// After the fork the thread moves back to the agent's cgroups and returns to
// the runtime, so the child's parent-death signal (tied to the forking
// thread) fires only when the agent dies: a job never outlives its agent to
// run beside its own retry. The thread keeps no_new_privs, which changes
// nothing for an agent that is already root. If it cannot move back, it is
// never unlocked, and the runtime ends it rather than leave the agent in a
// job's cgroup.
func spawn(cmd *exec.Cmd, cg *cgroup) error { return prepareSpawn(cg).start(cmd) }

// spawner is spawn in two steps: a thread made ready to fork into a
// cgroup, then the fork. On cgroup v1 a thread's first move into a new
// cgroup waits for the kernel (an RCU grace period after a pause in cgroup
// moves: 5-20 ms on a busy machine), which a session's channel can spend
// opening its data connection to the control plane (its TLS handshake)
// rather than after it.
type spawner struct {
	cmds chan *exec.Cmd // the command to start; closed to cancel
	errc chan error
}

// prepareSpawn readies a thread to start a process in cg. Exactly one of
// start and cancel must follow.
func prepareSpawn(cg *cgroup) *spawner {
	s := &spawner{cmds: make(chan *exec.Cmd), errc: make(chan error, 1)}
	go s.run(cg)
	return s
}

// start starts cmd from the prepared thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	s.cmds <- cmd
	return <-s.errc
}

// cancel gives the thread back to the runtime without starting anything.
func (s *spawner) cancel() { close(s.cmds) }

func (s *spawner) run(cg *cgroup) {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		s.fail(fmt.Errorf("set no_new_privs: %w", err))
		return
	}
	if cg == nil || cg.v2 {
		if cmd, ok := <-s.cmds; ok {
			s.errc <- cmd.Start()
		}
		runtime.UnlockOSThread()
		return
	}
	tid := strconv.Itoa(unix.Gettid())
	home, err := threadCgroups(tid, cg.tasks)
	if err != nil {
		s.fail(err)
		return
	}
	restore := func() bool {
		ok := true
		for _, t := range home {
			if err := os.WriteFile(t, []byte(tid), 0); err != nil {
				ok = false
			}
		}
		return ok
	}
	for _, t := range cg.tasks {
		if err := os.WriteFile(t, []byte(tid), 0); err != nil {
			if restore() {
				runtime.UnlockOSThread()
			}
			s.fail(fmt.Errorf("join cgroup %s: %w", filepath.Dir(t), err))
			return
		}
	}
	cmd, ok := <-s.cmds
	if ok {
		err = cmd.Start()
	}
	if restore() {
		runtime.UnlockOSThread()
	}
	if ok {
		s.errc <- err
	}
}

// fail answers the start that follows (if one does) with err.
func (s *spawner) fail(err error) {
	if _, ok := <-s.cmds; ok {
		s.errc <- err
	}
}

// threadCgroups returns, for each v1 tasks file of the job's cgroups, the
// tasks file of the cgroup the thread is in now, read from
// /proc/self/task/TID/cgroup ("ID:controllers:/path").
func threadCgroups(tid string, jobTasks []string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/task/" + tid + "/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	var out []string
	for _, t := range jobTasks {
		// .../cgroup/<controller>/dspool/<node>/<job>/tasks
		rel := strings.TrimPrefix(t, "/sys/fs/cgroup/")
		ctrl, _, _ := strings.Cut(rel, "/")
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) != 3 {
				continue
			}
			for _, c := range strings.Split(f[1], ",") {
				if c == ctrl {
					out = append(out, filepath.Join("/sys/fs/cgroup", ctrl, f[2], "tasks"))
				}
			}
		}
	}
	if len(out) != len(jobTasks) {
		return nil, fmt.Errorf("find own cgroups for %v in %q", jobTasks, b)
	}
	return out, nil
}

// lookPath finds file in the directories of path (the job's PATH, not the
// agent's), as a shell would.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found in PATH=%s", file, path)
}

// sysProcAttr is how every attempt starts: its own process group (so the
// whole tree can be signalled) and, when the agent is root, the user's ids.
func sysProcAttr(uid, gid int, cg *cgroup) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid >= 0 {
		a.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
	}
	if cg != nil && cg.v2 && cg.dirFD >= 0 {
		a.UseCgroupFD, a.CgroupFD = true, cg.dirFD
	}
	return a
}
