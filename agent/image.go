package agent

// Attempts in images (docs/decisions/0026-images.md): the agent runs
// `podman run` as root with the job's user, its share, its cgroup (as
// --cgroup-parent) and a containers.conf of its own, and removes the
// container when the attempt ends.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/share"
)

// containersConf is the agent's own containers.conf: podman reads it alone
// (CONTAINERS_CONF), never the host's. runc, because crun refuses the
// hybrid cgroup v1 layout; cgroupfs, as there may be no systemd; a file
// for events, as there may be no journal; ulimits set here, because podman
// cannot raise them above root's where root lacks CAP_SYS_RESOURCE; no
// pids limit of podman's own: the attempt's cgroup has one; the init
// (--init) the agent found, which Debian's podman only recommends.
const containersConf = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
pids_limit = 0
log_driver = "passthrough"
http_proxy = false
init_path = %q
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`

// podmanPath is where the agent looks for podman and runc: the system's
// directories, not a PATH a user could have set.
const podmanPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// podman is how this node runs attempts in images.
type podman struct {
	path    string // the podman program
	version string
	conf    string // the agent's containers.conf
	// fileStore holds the images loaded from files, apart from the node's
	// own: an archive names its images itself, and loading it into the
	// node's store would let a user retag an image others run by name.
	// Images there are run by id alone.
	fileStore []string

	mu     sync.Mutex
	loaded map[fileKey]string // image ids of the files loaded, by the file's identity

	// ready is closed once what an earlier agent left is gone (its
	// containers, its file images): work waits for it, so that the
	// removal never takes an image this run loaded.
	ready chan struct{}
}

// fileKey identifies a version of a file: another file, or this one
// rewritten, has another.
type fileKey struct {
	dev, ino    uint64
	size, mtime int64
}

// detectPodman finds podman and runc on this machine; without them, or
// without what an attempt in an image needs (root, cgroups, a runtime
// directory), it returns nil and why.
func (ag *Agent) detectPodman(ctx context.Context) (*podman, string) {
	switch {
	case !ag.root:
		return nil, "the agent does not run as root"
	case ag.cgroups == nil:
		return nil, "the agent has no cgroups"
	case ag.runtime == "":
		return nil, "the agent has no runtime directory"
	}
	path, err := lookPath("podman", podmanPath)
	if err != nil {
		return nil, "podman is not installed"
	}
	if _, err := lookPath("runc", podmanPath); err != nil {
		return nil, "runc is not installed"
	}
	init, err := lookPath("catatonit", podmanPath)
	if err != nil {
		if init, err = lookPath("tini", podmanPath); err != nil {
			return nil, "catatonit is not installed"
		}
	}
	// Both out of the node's runtime directory, which holds only the
	// files of work under way: the conf in the agent's state, the file
	// images' run root beside the node's runtime directory (in memory, as
	// podman wants it: gone at a reboot).
	conf := filepath.Join(ag.cfg.StateDir, "containers.conf")
	if err := writeNew(conf, []byte(fmt.Sprintf(containersConf, init)), 0o600); err != nil {
		return nil, fmt.Sprintf("write %s: %v", conf, err)
	}
	p := &podman{path: path, conf: conf,
		fileStore: []string{"--root", filepath.Join(ag.cfg.StateDir, "images"), "--runroot", ag.runtime + ".images"},
		loaded:    map[fileKey]string{}, ready: make(chan struct{})}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var errb bytes.Buffer
	cmd := p.command(ctx, "--version")
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Sprintf("podman --version: %v: %s", err, firstLine(errb.String()))
	}
	p.version = strings.TrimPrefix(strings.TrimSpace(string(out)), "podman version ")
	return p, ""
}

// writeNew writes a file of root's afresh: whatever was at path goes first,
// and the new one is created without following a link.
func writeNew(path string, b []byte, perm os.FileMode) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// command is podman with args and the agent's own environment.
func (p *podman) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.path, args...)
	cmd.Env = p.env()
	cmd.Dir = "/"
	return cmd
}

// env is podman's environment: nothing of the job's reaches podman, which
// reads many variables (CONTAINERS_*, TMPDIR, XDG_*, proxies) as root.
func (p *podman) env() []string {
	return []string{"PATH=" + podmanPath, "HOME=/root", "CONTAINERS_CONF=" + p.conf, "LANG=C.UTF-8"}
}

// noPodman is the refusal of an attempt in an image on a node that cannot
// run one.
func noPodman(node, why string) error {
	switch why {
	case "podman is not installed", "runc is not installed":
		return fmt.Errorf("node %s has no podman (%s): install podman and runc, or submit without --image", node, why)
	case "catatonit is not installed":
		return fmt.Errorf("node %s has no init for containers (%s): install catatonit, or submit without --image", node, why)
	}
	return fmt.Errorf("node %s cannot run jobs in images: %s; submit without --image", node, why)
}

// container is an attempt's container: its name, and the store it is in.
type container struct {
	name    string
	store   []string // podman's global flags for the store (none: the node's)
	network string
	envFile string
	// ended: podman run saw the container end and removed it (--rm).
	ended bool
}

// podmanFailed is the exit code of podman run when podman itself failed
// (an image it does not have, a mount it cannot make), not the job.
const podmanFailed = 125

// podmanFor returns the node's podman, looking again when it had none (it
// may have been installed since).
func (ag *Agent) podmanFor(ctx context.Context) (*podman, error) {
	ag.mu.Lock()
	p, why := ag.podman, ag.inv.ImagesWhy
	ag.mu.Unlock()
	if p != nil {
		<-p.ready
		return p, nil
	}
	p, why2 := ag.detectPodman(ctx)
	if p == nil {
		if why2 != "" {
			why = why2
		}
		return nil, noPodman(ag.nodeName, why)
	}
	close(p.ready) // nothing of an earlier agent's: it had no podman
	ag.mu.Lock()
	ag.podman, ag.inv.Podman, ag.inv.ImagesWhy = p, p.version, ""
	ag.mu.Unlock()
	return p, nil
}

// containerCmd prepares the `podman run` of an attempt: the image (loaded
// from its file as the user, when it is one), its environment in a file of
// root's, and the container's flags. The command runs as root, outside the
// attempt's cgroup (podman itself is not the job's to pay for); the
// container and conmon run in it.
func (ag *Agent) containerCmd(ctx context.Context, a *attempt, env []string, o share.Owner, extraMounts []string) (*exec.Cmd, *container, error) {
	s := &a.spec
	name := fmt.Sprintf("j%d-a%d", s.Job, s.Attempt)
	p, ref, c, err := ag.prepareContainer(ctx, imageRef{s.Image, s.ImageFile, s.ImageNetwork}, name, o)
	if err != nil {
		return nil, nil, err
	}
	c.envFile = filepath.Join(ag.runtime, name+".env")
	if err := writeEnvFile(c.envFile, env); err != nil {
		return nil, nil, err
	}
	args := ag.runArgs(c, name, o, a.cg, s.Memory, extraMounts)
	args = append(args, "--log-driver", "passthrough", "--env-file", c.envFile,
		"--workdir", filepath.Join(ag.cfg.Share, s.Workdir))
	args = append(args, gpuDevices(s.GPUs)...)
	args = append(args, "--", ref)
	args = append(args, s.Command...)
	return p.command(context.Background(), args...), c, nil
}

// imageRef is an image as the control plane sends it.
type imageRef struct {
	image   string
	file    bool
	network string
}

// prepareContainer finds the node's podman and the image (loading a file
// as its user), and names the container of the work called name.
func (ag *Agent) prepareContainer(ctx context.Context, img imageRef, name string, o share.Owner) (*podman, string, *container, error) {
	p, err := ag.podmanFor(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	ref, store := img.image, []string(nil)
	if img.file {
		if ref, err = ag.loadImageFile(ctx, p, img.image, o); err != nil {
			return nil, "", nil, err
		}
		store = p.fileStore
	}
	network := img.network
	if network == "" {
		network = "host"
	}
	return p, ref, &container{name: "dspool-" + ag.node + "-" + name, store: store, network: network}, nil
}

// runArgs are the flags of `podman run` that every container of the node
// has: the user's ids and nothing more, in the cgroup cg, the share at its
// path and the given files read-only.
func (ag *Agent) runArgs(c *container, name string, o share.Owner, cg *cgroup, mem dspool.Bytes, mounts []string) []string {
	args := append(append([]string(nil), c.store...), "run", "--rm", "--name", c.name, "--pull", "never",
		"--label", "dspool.node="+ag.node, "--label", "dspool.attempt="+name,
		"--init", "--user", fmt.Sprintf("%d:%d", o.UID, o.GID),
		"--security-opt", "no-new-privileges", "--cap-drop", "all",
		"--network", c.network, "--cgroup-parent", cg.rel,
		"--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--tmpfs", "/var/tmp:rw,mode=1777",
		"--shm-size", strconv.FormatInt(int64(mem), 10),
		"--volume", ag.cfg.Share+":"+ag.cfg.Share)
	for _, m := range mounts {
		args = append(args, "--volume", m+":"+m+":ro")
	}
	return args
}

// writeEnvFile writes the job's environment as podman's env file: one
// KEY=VALUE a line, which a value with a line break cannot be.
func writeEnvFile(path string, env []string) error {
	var b bytes.Buffer
	for _, kv := range env {
		if strings.ContainsAny(kv, "\n\r") {
			k, _, _ := strings.Cut(kv, "=")
			return fmt.Errorf("the variable %s holds a line break, which a job in an image cannot be given: put the value in a file (--secret-file, or on the share)", k)
		}
		b.WriteString(kv)
		b.WriteByte('\n')
	}
	return writeNew(path, b.Bytes(), 0o600)
}

// gpuDevices are the flags that give a container the attempt's GPUs: by
// CDI where the node has NVIDIA's spec (it brings the driver's libraries
// along), else their device nodes and the driver's control nodes.
func gpuDevices(gpus []int) []string {
	if len(gpus) == 0 {
		return nil
	}
	var out []string
	for _, spec := range []string{"/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml", "/etc/cdi/nvidia.json", "/var/run/cdi/nvidia.json"} {
		if _, err := os.Stat(spec); err == nil {
			for _, g := range gpus {
				out = append(out, "--device", "nvidia.com/gpu="+strconv.Itoa(g))
			}
			return out
		}
	}
	for _, g := range gpus {
		out = append(out, "--device", "/dev/nvidia"+strconv.Itoa(g))
	}
	for _, d := range []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"} {
		if _, err := os.Stat(d); err == nil {
			out = append(out, "--device", d)
		}
	}
	return out
}

// shareRel turns an image file's path into one relative to the share's
// root: relative paths are already, absolute ones must be beneath it.
func (ag *Agent) shareRel(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	rel, err := filepath.Rel(ag.cfg.Share, filepath.Clean(p))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("image file %s is not on the share (%s)", p, ag.cfg.Share)
	}
	return rel, nil
}

// loadImageFile loads the image archive at p on the share into the node's
// store of file images, and returns its id. The file is opened as its
// user, without following a symlink at any component; a file already
// loaded (the same inode, size and time of change) is not loaded again.
func (ag *Agent) loadImageFile(ctx context.Context, p *podman, image string, o share.Owner) (string, error) {
	rel, err := ag.shareRel(image)
	if err != nil {
		return "", err
	}
	var f *os.File
	err = share.As(o.UID, o.GID, func() error {
		var err error
		f, err = share.OpenReadable(ag.cfg.Share, rel)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("image file: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("image file %s: %w", image, err)
	}
	key := fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}
	p.mu.Lock()
	defer p.mu.Unlock() // one load at a time: they would share layers
	if id, ok := p.loaded[key]; ok {
		return id, nil // forgotten should podman not find it (forget)
	}
	// podman reads the archive from its stdin, as the agent opened it;
	// a gzipped one is unpacked here.
	_ = unix.SetNonblock(int(f.Fd()), false)
	br := bufio.NewReaderSize(f, 64<<10)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("image file %s: %w", image, err)
		}
		in = zr
	}
	cmd := p.command(ctx, append(append([]string(nil), p.fileStore...), "load", "--quiet")...)
	cmd.Stdin = in
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("load image file %s: %v: %s", image, err, firstLine(errb.String()))
	}
	id, err := loadedID(ctx, p, out.String())
	if err != nil {
		return "", fmt.Errorf("load image file %s: %w", image, err)
	}
	p.loaded[key] = id
	return id, nil
}

// loadedID finds the id of the image podman load says it loaded ("Loaded
// image: NAME" or "Loaded image(s): ID"): the archive's names mean nothing
// here.
func loadedID(ctx context.Context, p *podman, out string) (string, error) {
	var ref string
	for _, line := range strings.Split(out, "\n") {
		if _, r, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "Loaded image") {
			ref = strings.TrimSpace(strings.Split(r, ",")[0])
		}
	}
	if ref == "" {
		return "", fmt.Errorf("podman load named no image: %q", firstLine(out))
	}
	b, err := p.command(ctx, append(append([]string(nil), p.fileStore...), "image", "inspect", "--format", "{{.Id}}", ref)...).Output()
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", ref, err)
	}
	id := strings.TrimSpace(string(b))
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", fmt.Errorf("image %s has the id %q", ref, firstLine(id))
	}
	return id, nil
}

// forget drops what is known of the file images loaded, once podman failed
// to run one (it may have been removed from the store since).
func (p *podman) forget() {
	p.mu.Lock()
	clear(p.loaded)
	p.mu.Unlock()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// removeContainer removes an attempt's container and its env file, once
// the processes in its cgroup are gone (--rm has done it when podman run
// saw the container end).
func (ag *Agent) removeContainer(c *container) {
	if c == nil {
		return
	}
	if c.envFile != "" {
		_ = os.Remove(c.envFile)
	}
	if c.ended {
		return
	}
	ag.mu.Lock()
	p := ag.podman
	ag.mu.Unlock()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append([]string(nil), c.store...), "rm", "--force", "--ignore", "--time", "0", c.name)
	// A container whose conmon was killed (by the watchdog, or a kill of
	// its whole cgroup) is refused once, as podman finds it stopped while
	// stopping it, and removed the next time.
	var err error
	var out []byte
	for i := 0; i < 3; i++ {
		if out, err = p.command(ctx, args...).CombinedOutput(); err == nil {
			return
		}
	}
	ag.log.Warn("remove an attempt's container", "container", c.name, "err", err, "out", firstLine(string(out)))
}

// removeStaleContainers removes the containers an earlier run of this
// node's agent left (their processes died with their cgroups), and the
// images it loaded from files.
func (ag *Agent) removeStaleContainers(ctx context.Context, p *podman) {
	defer close(p.ready)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The file images' store is looked at only if an earlier run made it:
	// podman makes a store it is pointed at, and mounts its overlay
	// directory, which would then outlive an agent that never ran an
	// image.
	stores := [][]string{nil}
	fileStore := false
	if _, err := os.Lstat(p.fileStore[1]); err == nil {
		stores, fileStore = append(stores, p.fileStore), true
	}
	for _, store := range stores {
		args := append(append([]string(nil), store...), "ps", "--all", "--quiet", "--filter", "label=dspool.node="+ag.node)
		out, err := p.command(ctx, args...).Output()
		if err != nil {
			continue
		}
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			continue
		}
		for _, id := range ids {
			ag.removeContainer(&container{name: id, store: store})
		}
	}
	if !fileStore {
		return
	}
	// The images loaded from files by an earlier run: this run knows none
	// of them (it loads a file again at its first use), and they would
	// pile up otherwise.
	prune := append(append([]string(nil), p.fileStore...), "image", "prune", "--all", "--force")
	if out, err := p.command(ctx, prune...).CombinedOutput(); err != nil {
		ag.log.Warn("remove the images an earlier agent loaded from files", "err", err, "out", firstLine(string(out)))
	}
}
