package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
)

// cgroups finds where this machine lets the agent create cgroups: the
// unified v2 hierarchy when it offers memory, cpu and pids, else the v1
// memory, cpu and pids hierarchies.
type cgroups struct {
	root string // v2 mount, or v1's parent of the controller mounts
	v2   bool
	base string // relative dir under each hierarchy: dspool/<node>
	// devices: the v1 devices hierarchy is there too, and each cgroup
	// denies the device nodes of the GPUs its work does not hold.
	devices bool
}

func detectCgroups(node string) (*cgroups, error) {
	const mnt = "/sys/fs/cgroup"
	if b, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers")); err == nil {
		have := strings.Fields(string(b))
		if contains(have, "memory") && contains(have, "pids") && contains(have, "cpu") {
			c := &cgroups{root: mnt, v2: true, base: filepath.Join("dspool", node)}
			for _, dir := range []string{mnt, filepath.Join(mnt, "dspool")} {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return nil, err
				}
				if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0); err != nil {
					return nil, fmt.Errorf("enable cgroup v2 controllers in %s: %w", dir, err)
				}
			}
			return c, os.MkdirAll(filepath.Join(mnt, c.base), 0o755)
		}
	}
	c := &cgroups{root: mnt, base: filepath.Join("dspool", node)}
	for _, ctrl := range []string{"memory", "cpu", "pids"} {
		if _, err := os.Stat(filepath.Join(mnt, ctrl, "tasks")); err != nil {
			return nil, fmt.Errorf("no cgroup v1 %s controller at %s", ctrl, filepath.Join(mnt, ctrl))
		}
		if err := os.MkdirAll(filepath.Join(mnt, ctrl, c.base), 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "devices", "devices.deny")); err == nil {
		c.devices = os.MkdirAll(filepath.Join(mnt, "devices", c.base), 0o755) == nil
	}
	return c, nil
}

// controllers are the v1 hierarchies the node's cgroups live in.
func (c *cgroups) controllers() []string {
	if c.devices {
		return []string{"memory", "cpu", "pids", "devices"}
	}
	return []string{"memory", "cpu", "pids"}
}

// HostCaps are the limits on all dspool work on a machine together (the
// cgroup dspool/ that holds every node's): below the machine's memory and
// process ids, so the agents and the system keep room whatever the jobs of
// every user on it do.
func HostCaps() (mem dspool.Bytes, pids int) {
	total := MemTotal()
	reserve := min(max(total/10, 512<<20), 4<<30)
	mem = total - reserve
	pidMax := 32768
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			pidMax = n
		}
	}
	pids = pidMax - max(pidMax/8, 1024)
	return mem, max(pids, 256)
}

// capHost sets HostCaps on the cgroup dspool/ in each hierarchy. Every
// agent of the machine sets the same values. A limit the kernel refuses
// (usage above it already) is an error: the machine would not keep room.
func (c *cgroups) capHost() error {
	mem, pids := HostCaps()
	type limit struct{ dir, file, val string }
	var ls []limit
	if c.v2 {
		d := filepath.Join(c.root, "dspool")
		ls = []limit{{d, "memory.max", strconv.FormatInt(int64(mem), 10)}, {d, "pids.max", strconv.Itoa(pids)}}
	} else {
		ls = []limit{{filepath.Join(c.root, "memory", "dspool"), "memory.limit_in_bytes", strconv.FormatInt(int64(mem), 10)},
			{filepath.Join(c.root, "pids", "dspool"), "pids.max", strconv.Itoa(pids)}}
	}
	for _, l := range ls {
		if err := os.WriteFile(filepath.Join(l.dir, l.file), []byte(l.val), 0); err != nil {
			return fmt.Errorf("cap all dspool work on this machine: cgroup %s: set %s=%s: %w", l.dir, l.file, l.val, err)
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// cgroup is one attempt's cgroup, across one (v2) or several (v1)
// hierarchies.
type cgroup struct {
	v2   bool
	dirs []string
	// procs lists the cgroup.procs file of every hierarchy, to find and
	// signal every process of the attempt.
	procs []string
	// tasks (v1) are the files a forking thread joins; dirFD (v2) is the
	// directory clone3 places the child in.
	tasks []string
	dirFD int
	// rel is its path in each hierarchy (/dspool/NODE/NAME), which podman
	// takes as a container's --cgroup-parent.
	rel string
}

// create makes the cgroup called name with these limits, whose processes
// cannot open the devices deny names (on cgroup v1 with its devices
// hierarchy; v2 needs an eBPF program for it, which the agent does not
// load: there deny is not enforced, and the agent said so at its start).
func (c *cgroups) create(name string, cpus dspool.MilliCPU, mem dspool.Bytes, pids int, deny []devNum) (*cgroup, error) {
	g := &cgroup{v2: c.v2, dirFD: -1, rel: "/" + filepath.Join(c.base, name)}
	write := func(dir, file, val string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
			return fmt.Errorf("cgroup %s: set %s=%s: %w", dir, file, val, err)
		}
		return nil
	}
	quota := strconv.FormatInt(int64(cpus)*100, 10) // per 100000us period
	if int64(cpus)*100 < 1000 {
		quota = "1000"
	}
	if c.v2 {
		dir := filepath.Join(c.root, c.base, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		g.dirs = []string{dir}
		g.procs = []string{filepath.Join(dir, "cgroup.procs")}
		for _, kv := range [][2]string{{"memory.max", strconv.FormatInt(int64(mem), 10)}, {"memory.swap.max", "0"},
			{"cpu.max", quota + " 100000"}, {"pids.max", strconv.Itoa(pids)}} {
			if err := write(dir, kv[0], kv[1]); err != nil && kv[0] != "memory.swap.max" {
				g.remove()
				return nil, err
			}
		}
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			g.remove()
			return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
		}
		g.dirFD = fd
		return g, nil
	}
	limits := map[string][][2]string{
		"memory": {{"memory.limit_in_bytes", strconv.FormatInt(int64(mem), 10)}, {"memory.memsw.limit_in_bytes", strconv.FormatInt(int64(mem), 10)}},
		"cpu":    {{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", quota}},
		"pids":   {{"pids.max", strconv.Itoa(pids)}},
	}
	for _, d := range deny {
		limits["devices"] = append(limits["devices"], [2]string{"devices.deny", d.rule()})
	}
	// The devices hierarchy only where there is a device to deny: a node
	// without GPUs pays nothing for it.
	ctrls := []string{"memory", "cpu", "pids"}
	if c.devices && len(deny) > 0 {
		ctrls = append(ctrls, "devices")
	}
	for _, ctrl := range ctrls {
		dir := filepath.Join(c.root, ctrl, c.base, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			g.remove()
			return nil, err
		}
		g.dirs = append(g.dirs, dir)
		g.procs = append(g.procs, filepath.Join(dir, "cgroup.procs"))
		g.tasks = append(g.tasks, filepath.Join(dir, "tasks"))
		for _, kv := range limits[ctrl] {
			// memsw exists only with swap accounting; the memory limit alone
			// still holds.
			if err := write(dir, kv[0], kv[1]); err != nil && kv[0] != "memory.memsw.limit_in_bytes" {
				g.remove()
				return nil, err
			}
		}
	}
	return g, nil
}

// spared is the agent's pid in its watchdog (0 in the agent itself).
var spared int

// pids lists the processes in the cgroup, never the agent itself: on
// cgroup v1 one of its threads passes through a job's cgroup to fork the
// job, and cgroup.procs then names the agent. Neither the agent nor its
// watchdog may take the agent for a job's process.
func (g *cgroup) pids() []int { return g.pidsBut("") }

// pidsBut lists the processes in the cgroup but for those in the cgroups
// beneath it called skip.
func (g *cgroup) pidsBut(skip string) []int {
	seen := map[int]bool{os.Getpid(): true, spared: true}
	var out []int
	read := func(p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			return
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	for _, p := range g.procs {
		read(p)
		// The cgroups beneath (a container's and its conmon's, which
		// podman makes under the attempt's): cgroup.procs lists only its
		// own cgroup's processes.
		for _, d := range subCgroups(filepath.Dir(p)) {
			if skip == "" || !strings.Contains("/"+d+"/", "/"+skip+"/") {
				read(filepath.Join(d, "cgroup.procs"))
			}
		}
	}
	return out
}

// subCgroups lists the cgroups beneath dir, deepest first.
func subCgroups(dir string) []string {
	var out []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			d := filepath.Join(dir, e.Name())
			out = append(append(out, subCgroups(d)...), d)
		}
	}
	return out
}

// signal sends sig to every process in the cgroup, daemons included.
func (g *cgroup) signal(sig syscall.Signal) { g.signalBut(sig, "") }

// signalBut sends sig to the processes of the cgroup but for those in the
// cgroups beneath it called skip.
func (g *cgroup) signalBut(sig syscall.Signal, skip string) {
	for _, pid := range g.pidsBut(skip) {
		_ = syscall.Kill(pid, sig)
	}
}

// oomKilled reports whether the kernel killed a process of the cgroup for
// exceeding its memory limit.
func (g *cgroup) oomKilled() bool {
	var dirs []string
	for _, d := range g.dirs {
		dirs = append(append(dirs, d), subCgroups(d)...)
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "memory.events")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
					return true
				}
			}
		}
		if b, err := os.ReadFile(filepath.Join(d, "memory.oom_control")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
					return true
				}
			}
		}
	}
	return false
}

// hitLimit reports whether the cgroup's memory use reached its limit. On
// cgroup v1 the kernel counts an OOM kill in the cgroup of the process it
// killed (a container's, which podman removes with it), not in the
// attempt's, whose peak use is what is left to tell.
func (g *cgroup) hitLimit() bool {
	num := func(path string) int64 {
		b, err := os.ReadFile(path)
		if err != nil {
			return -1
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	for _, d := range g.dirs {
		for _, pre := range []string{"memory.", "memory.memsw."} {
			peak, limit := num(filepath.Join(d, pre+"max_usage_in_bytes")), num(filepath.Join(d, pre+"limit_in_bytes"))
			if peak > 0 && limit > 0 && peak >= limit {
				return true
			}
		}
	}
	return false
}

// kill kills every process in the cgroup. They cannot fork meanwhile:
// cgroup.kill does it at once on v2, and on v1 the pids limit drops to 0
// first, so each pass finds all there are.
func (g *cgroup) kill() {
	for _, d := range g.dirs {
		if writeExisting(filepath.Join(d, "cgroup.kill"), "1") == nil {
			continue
		}
		_ = writeExisting(filepath.Join(d, "pids.max"), "0")
	}
	for i := 0; i < 50 && len(g.pids()) > 0; i++ {
		g.signal(syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
}

// writeExisting writes val to a file that must exist (a cgroup's control
// file; cgroupfs refuses to create one).
func writeExisting(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// remove kills what is left and removes the cgroup directories.
func (g *cgroup) remove() {
	if g.dirFD >= 0 {
		_ = unix.Close(g.dirFD)
		g.dirFD = -1
	}
	if len(g.pids()) > 0 {
		g.kill()
	}
	dirs := g.dirs
	if !g.v2 && g.rel != "" {
		dirs = v1Dirs(g.rel) // podman makes the attempt's path in every hierarchy
	}
	for _, d := range dirs {
		removeTree(d)
	}
}

// v1Dirs is rel in every cgroup v1 hierarchy of the machine.
func v1Dirs(rel string) []string {
	mounts, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, m := range mounts {
		if d := filepath.Join("/sys/fs/cgroup", m.Name(), rel); m.IsDir() {
			if _, err := os.Stat(d); err == nil {
				out = append(out, d)
			}
		}
	}
	return out
}

// removeTree removes the cgroup dir and those beneath it, deepest first
// (a cgroup with children cannot be removed).
func removeTree(dir string) {
	for _, d := range subCgroups(dir) {
		_ = os.Remove(d)
	}
	_ = os.Remove(dir)
}

// cleanup removes cgroups left by an earlier run of this node's agent,
// killing any process still in them, so nothing of a lost boot keeps running.
func (c *cgroups) cleanup() {
	var parents []string
	if c.v2 {
		parents = []string{filepath.Join(c.root, c.base)}
	} else {
		for _, ctrl := range c.controllers() {
			parents = append(parents, filepath.Join(c.root, ctrl, c.base))
		}
	}
	for _, p := range parents {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.IsDir() {
				g := &cgroup{v2: c.v2, dirs: []string{filepath.Join(p, e.Name())}, procs: []string{filepath.Join(p, e.Name(), "cgroup.procs")}, dirFD: -1}
				if !c.v2 {
					g.rel = "/" + filepath.Join(c.base, e.Name())
				}
				g.remove()
			}
		}
	}
}

// removeAll removes this node's cgroups, its own directory included.
func (c *cgroups) removeAll() {
	c.cleanup()
	if c.v2 {
		_ = os.Remove(filepath.Join(c.root, c.base))
		return
	}
	for _, d := range v1Dirs("/" + c.base) { // podman's too
		_ = os.Remove(d)
	}
}
