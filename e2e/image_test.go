package e2e_test

import (
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestJobInImage: a job in an image (docs/decisions/0026-images.md), here
// one the test builds from busybox-static and imports into the node's
// podman, runs as its user with the share mounted at its path, and in
// the image (a file only the image has); it is killed at its memory limit
// with the message that says so, ended at its time limit through its
// cgroup, and the same image saved to a file in the user's home runs too.
// An image file that is a symlink is refused. A pool's image is its jobs'
// and its SSH sessions'. A container whose agent died goes with the next
// agent, and no container or cgroup of the work is left behind.
func TestJobInImage(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("needs podman and runc (apt-get install podman runc): the agent runs jobs in images with them")
	}
	bb := staticBusybox(t)
	img := importBusyboxImage(t, bb)

	requireSSHClients(t)
	up := startUp(t, upConfig{UIDBase: uidBase(126)})
	su := up.sshUser(t, "e2eimage126")
	r := &imageRun{up: up, su: su, env: up.userEnv(su.token), img: img,
		home: filepath.Join(up.Share, "home", su.Name)}
	t.Run("job", func(t *testing.T) { jobInImage(t, r) })
	t.Run("file", func(t *testing.T) { imageFile(t, r) })
	t.Run("pool and session", func(t *testing.T) { poolImage(t, r) })
	t.Run("agent killed", func(t *testing.T) { agentKilledUnderImage(t, r) })
	t.Run("nothing left", func(t *testing.T) { nothingLeftOfImages(t, r) })
}

// imageRun is what the parts of TestJobInImage share.
type imageRun struct {
	up   *upProc
	su   *sshUser
	env  []string
	img  string
	home string // the user's on the share
}

// jobInImage: a job in the image runs as its user, with the share at its
// path; it is killed at its memory limit and ended at its time limit.
func jobInImage(t *testing.T, r *imageRun) {
	up, usr, env, img := r.up, r.su.User, r.env, r.img
	// As the user, in the image, with the share at its path on the node.
	out, errs, code := cli(t, env, "job", "submit", "--wait", "--image", img, "--", "sh", "-c",
		`id -u; id -g; cat /etc/dspool-e2e-marker; echo made > "$HOME/from-image"; pwd; echo "$DSPOOL_SHARE"`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 {
		t.Fatalf("a job in image %s: exit %d, stdout %q, stderr %q", img, code, out, errs)
	}
	if lines[0] != strconv.Itoa(usr.UID) || lines[1] != strconv.Itoa(usr.GID) {
		t.Errorf("the job ran as %s:%s, want the user's %d:%d", lines[0], lines[1], usr.UID, usr.GID)
	}
	if lines[2] != "busybox image" {
		t.Errorf("the job did not see the image's own file: %q", lines[2])
	}
	if !strings.HasPrefix(lines[3], up.Share+"/jobs/") || lines[4] != up.Share {
		t.Errorf("working directory %q, DSPOOL_SHARE %q: want the job's directory on the share %s", lines[3], lines[4], up.Share)
	}
	made := filepath.Join(up.Share, "home", usr.Name, "from-image")
	if st, err := os.Stat(made); err != nil {
		t.Errorf("the job's file on the share: %v", err)
	} else if owner := int(st.Sys().(*syscall.Stat_t).Uid); owner != usr.UID {
		t.Errorf("the job's file on the share belongs to uid %d, want %d", owner, usr.UID)
	}

	// With no privilege to gain: no capability, no_new_privs.
	out, errs, code = cli(t, env, "job", "submit", "--wait", "--image", img, "--", "grep", "-E", "^(CapBnd|CapEff|NoNewPrivs):", "/proc/self/status")
	if want := "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\n"; code != 0 || out != want {
		t.Errorf("a job in an image: exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}

	// The node says it runs images.
	if shown := cliOK(t, up.env(), "node", "show", "default-1"); !strings.Contains(shown, "\nImages: podman ") {
		t.Errorf("node show default-1 does not say it runs images with podman:\n%s", shown)
	}

	// Killed at its memory limit: dd's 200 MiB buffer, in a 50 MiB job.
	_, errs, code = cli(t, env, "job", "submit", "--wait", "--memory", "50MiB", "--image", img, "--",
		"dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1")
	if code != 137 || !strings.Contains(errs, "killed for using more than its memory limit of 50MiB") {
		t.Errorf("a job in an image over its memory: exit %d, stderr %q; want 137 and the memory limit named", code, errs)
	}

	// A time limit ends it through its cgroup; --init passes SIGTERM on.
	began := time.Now()
	_, errs, code = cli(t, env, "job", "submit", "--wait", "--time", "2s", "--image", img, "--", "sleep", "600")
	if code != 143 || !strings.Contains(errs, "time limit of 2s") {
		t.Errorf("a job in an image past its time limit: exit %d, stderr %q; want 143 and the time limit", code, errs)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Errorf("the job past its time limit of 2s took %s to end", d)
	}
}

// imageFile: the image saved to a file in the user's home runs; a symlink
// is refused, and so is an image the node lacks.
func imageFile(t *testing.T, r *imageRun) {
	usr, env, img, home := r.su.User, r.env, r.img, r.home
	// The same image as a file in the user's home, loaded by the node.
	file := filepath.Join(home, "bb.tar")
	podmanTest(t, "save", "--quiet", "-o", file, img)
	if err := os.Chown(file, usr.UID, usr.GID); err != nil {
		t.Fatal(err)
	}
	out, errs, code := cli(t, env, "job", "submit", "--wait", "--image", "bb.tar", "--", "cat", "/etc/dspool-e2e-marker")
	if code != 0 || out != "busybox image\n" {
		t.Errorf("a job in image file bb.tar: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// A symlink is not followed, by the user's choice or not.
	if err := os.Symlink("bb.tar", filepath.Join(home, "link.tar")); err != nil {
		t.Fatal(err)
	}
	_, errs, code = cli(t, env, "job", "submit", "--wait", "--image", "link.tar", "--", "true")
	if code == 0 || !strings.Contains(errs, "symlink") {
		t.Errorf("a job in an image file that is a symlink: exit %d, stderr %q; want a refusal that says symlink", code, errs)
	}

	// An image the node does not have: podman cannot run it.
	_, errs, code = cli(t, env, "job", "submit", "--wait", "--image", "localhost/dspool-e2e-none:1", "--", "true")
	if code == 0 || !strings.Contains(errs, "podman could not run the job in image localhost/dspool-e2e-none:1") {
		t.Errorf("a job in an image the node lacks: exit %d, stderr %q; want a start error that says podman could not run it", code, errs)
	}
	logs := cliOK(t, env, "job", "logs", strings.Fields(errs)[2])
	if !strings.Contains(logs, "dspool-e2e-none") {
		t.Errorf("the log of a job in an image the node lacks says %q, want podman's error", logs)
	}
}

// poolImage: a pool's image is its jobs' and its sessions'.
func poolImage(t *testing.T, r *imageRun) {
	up, su, usr, env, img, home := r.up, r.su, r.su.User, r.env, r.img, r.home
	// A pool's image is its jobs' when they name none; its network may be
	// none.
	poolFile := filepath.Join(t.TempDir(), "pool.yaml")
	err := os.WriteFile(poolFile, []byte("name: boxed\nnode: {cpus: 1, memory: 1GiB}\ncount: 1\nimage: "+img+"\nimage_network: none\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cliOK(t, up.env(), "pool", "apply", "-f", poolFile)
	out, errs, code := cli(t, env, "job", "submit", "--wait", "--pool", "boxed", "--", "sh", "-c", "cat /etc/dspool-e2e-marker; ls /sys/class/net")
	if code != 0 || out != "busybox image\nlo\n" {
		t.Errorf("a job in pool boxed, whose image is %s with no network: exit %d, stdout %q, stderr %q; want the image's file and lo alone", img, code, out, errs)
	}
	boxed := strings.Fields(errs)[2] // "submitted job N"

	// A session in the pool runs its commands in the image too, as the
	// user, with the share; sftp serves the share from the node.
	out, errs, code = su.ssh(t, usr.Name+"+boxed", nil, "cat /etc/dspool-e2e-marker; id -u; pwd; ls /sys/class/net")
	if code != 0 || out != fmt.Sprintf("busybox image\n%d\n%s\nlo\n", usr.UID, home) {
		t.Errorf("ssh %s+boxed: exit %d, stdout %q, stderr %q; want the image's file, the user's uid, their home and no network", usr.Name, code, out, errs)
	}
	out, errs, code = su.ssh(t, usr.Name+"+boxed", nil, "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status")
	if want := "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n"; code != 0 || out != want {
		t.Errorf("ssh %s+boxed: exit %d, stdout %q, stderr %q; want %q", usr.Name, code, out, errs, want)
	}
	out, errs, code = su.ssh(t, usr.Name+"+boxed", strings.NewReader("exit 3\n"), "sh")
	if code != 3 {
		t.Errorf("ssh %s+boxed sh, exit 3: exit %d, stdout %q, stderr %q", usr.Name, code, out, errs)
	}

	// rsync serves the share from the node: the image has none.
	if _, err := exec.LookPath("rsync"); err == nil {
		src := filepath.Join(tempDir(t), "sent.txt")
		if err := os.WriteFile(src, []byte("sent\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rsync := exec.Command("rsync", "-e", "ssh "+strings.Join(su.sshOpts(up.SSHPort), " "), src, usr.Name+"+boxed@127.0.0.1:sent.txt")
		if b, err := rsync.CombinedOutput(); err != nil {
			t.Errorf("rsync to a session in an image: %v: %s", err, b)
		} else if b, _ := os.ReadFile(filepath.Join(home, "sent.txt")); string(b) != "sent\n" {
			t.Errorf("rsync to a session in an image wrote %q", b)
		}
	}

	// A login shell on a terminal.
	shell := exec.Command("ssh", append(su.sshOpts(up.SSHPort, "-tt"), usr.Name+"+boxed@127.0.0.1")...)
	shell.Stdin = strings.NewReader("cat /etc/dspool-e2e-marker; exit 5\n")
	b, err := shell.CombinedOutput()
	if code := shell.ProcessState.ExitCode(); code != 5 || !strings.Contains(string(b), "busybox image") {
		t.Errorf("ssh -tt %s+boxed: exit %d (%v), output %q; want the image's file and exit 5", usr.Name, code, err, b)
	}

	var shown struct{ Image string }
	cliJSON(t, env, &shown, "job", "show", "-o", "json", boxed)
	if shown.Image != "" {
		t.Errorf("job show of a job in its pool's image: image %q, want none of its own", shown.Image)
	}
}

// agentKilledUnderImage: the container of a job whose agent died goes
// with the next agent.
func agentKilledUnderImage(t *testing.T, r *imageRun) {
	up, env, img := r.up, r.env, r.img
	// An agent killed under a job in an image: the container dies with the
	// job's cgroup, and the agent that comes next removes it.
	id := submit(t, env, "--retries", "1", "--image", img, "--", "sleep", "600")
	running := func(attempt int) string {
		return podmanTest(t, "ps", "--quiet", "--filter", "label=dspool.attempt=j"+itoa(id)+"-a"+strconv.Itoa(attempt))
	}
	eventually(t, 30*time.Second, "attempt 1's container to run", func() bool { return running(1) != "" })
	if err := syscall.Kill(agentPID(t, filepath.Join(up.Data, "agents", "default-1")), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "attempt 2's container to run", func() bool { return running(2) != "" })
	if left := podmanTest(t, "ps", "--all", "--quiet", "--filter", "label=dspool.attempt=j"+itoa(id)+"-a1"); left != "" {
		t.Errorf("attempt 1's container is left after its agent died and came back: %s", left)
	}
	cliOK(t, env, "job", "cancel", itoa(id))
	waitState(t, env, id, dspool.JobCancelled, 30*time.Second)
}

// nothingLeftOfImages: no container or cgroup of the work is left.
func nothingLeftOfImages(t *testing.T, r *imageRun) {
	up := r.up
	// Nothing left: no container of this pool's nodes, no cgroup of a job.
	var nodes []struct{ ID string }
	cliJSON(t, up.env(), &nodes, "node", "list", "-o", "json")
	cliOK(t, up.env(), "session", "list") // sessions end as their connections close
	for _, n := range nodes {
		eventually(t, 30*time.Second, "no container of node "+n.ID, func() bool {
			return podmanTest(t, "ps", "--all", "--quiet", "--filter", "label=dspool.node="+n.ID) == ""
		})
		if left, _ := filepath.Glob("/sys/fs/cgroup/*/dspool/" + n.ID + "/j*"); len(left) > 0 {
			t.Errorf("cgroups left after the jobs ended: %v", left)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(up.Data, "agents", "*", "images", "overlay-containers", "*", "userdata")); len(left) > 0 {
		t.Errorf("containers of image files left after the jobs ended: %v", left)
	}
}

// staticBusybox is the machine's statically linked busybox (Debian's
// busybox-static), or the test is skipped.
func staticBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p
		}
	}
	t.Skip("needs a static busybox (apt-get install busybox-static) to build the image's root file system")
	return ""
}

// importBusyboxImage builds a root file system of busybox and a file of
// its own, imports it into the node's podman store under a name of this
// run, and removes the image when the test ends.
func importBusyboxImage(t *testing.T, busybox string) string {
	t.Helper()
	root := busyboxRoot(t, busybox, "busybox image", "sh", "id", "cat", "echo", "dd", "sleep", "pwd", "true", "ls", "grep")
	return podmanImport(t, "busybox", "-C", root, ".")
}

// busyboxRoot makes a root file system of busybox, its commands cmds and
// /etc/dspool-e2e-marker, which holds marker.
func busyboxRoot(t *testing.T, busybox, marker string, cmds ...string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "var/tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "dspool-e2e-marker"), []byte(marker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// podmanImport imports into the node's podman store the root file system
// that tar, with tarArgs, writes, under a name of this run
// (localhost/dspool-e2e-KIND:RANDOM), and removes the image when the test
// ends.
func podmanImport(t *testing.T, kind string, tarArgs ...string) string {
	t.Helper()
	rb := make([]byte, 4)
	_, _ = rand.Read(rb)
	name := "localhost/dspool-e2e-" + kind + ":" + hex.EncodeToString(rb)
	tar := exec.Command("tar", append([]string{"-c"}, tarArgs...)...)
	imp := exec.Command("podman", "import", "--quiet", "-", name)
	imp.Env = podmanEnv(t)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var tarErr bytes.Buffer
	tar.Stderr = &tarErr
	imp.Stdin = pipe
	if err := tar.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("podman import: %v: %s", err, out)
	}
	if err := tar.Wait(); err != nil {
		t.Fatalf("tar of the image's root file system: %v: %s", err, tarErr.Bytes())
	}
	t.Cleanup(func() { _ = exec.Command("podman", "rmi", "--force", name).Run() })
	return name
}

// podmanTest runs podman with the settings these machines need for it
// (shared/engines: runc, cgroupfs, events in a file) and returns its
// output.
func podmanTest(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("podman", args...)
	cmd.Env = podmanEnv(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func podmanEnv(t *testing.T) []string {
	conf := filepath.Join(os.TempDir(), "dspool-e2e-containers.conf")
	if _, err := os.Stat(conf); err != nil {
		err := os.WriteFile(conf, []byte("[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"), 0o644)
		if err != nil {
			t.Fatal(err)
		}
	}
	return append(os.Environ(), "CONTAINERS_CONF="+conf)
}
