package share

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// shareRoot is a share whose root and parents everyone may pass through,
// as a mount point is.
func shareRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "share")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Layout(root); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestLayoutAndProbeWhereRootIsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := shareRoot(t)
	st, err := os.Stat(filepath.Join(root, ProbeDir))
	if err != nil || st.Mode()&fs.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Fatalf("probe directory: %v %v, want a sticky directory everyone may write", st.Mode(), err)
	}
	mode, err := Probe(root)
	if err != nil || mode != ModeOwners {
		t.Fatalf("Probe = %q, %v; want %q", mode, err, ModeOwners)
	}
	for _, d := range []string{"home", ProbeDir} {
		if left, _ := os.ReadDir(filepath.Join(root, d)); len(left) != 0 {
			t.Errorf("the probe left %v in %s", left, d)
		}
	}
}

// squashed is what a node whose root is squashed found, as the child
// process reports it.
type squashed struct {
	Mode        Mode
	ProbeErr    string
	MakeHome    string // error making a missing home, as root
	MadeForUs   string // error reaching a home the control plane made, as root
	AsUser      string // error making a directory and a log as the user
	LogOwner    int
	WorkOwner   int
	ReadOthers  string // error opening another user's log as root
	ListTopDirs string
}

// TestProbeWhereRootIsSquashed runs the node's side in a user namespace
// where root is uid 65534 outside and every other id is itself: the
// kernel's own root squash. Root there may not make a user's home in
// root's home/; the control plane does, and the node then works inside
// it as the user.
func TestProbeWhereRootIsSquashed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := shareRoot(t)
	const uid = 5000
	// What the control plane makes before it sends the work.
	if err := MkdirAll(root, "home/ann", Owner{uid, uid}, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(root, "jobs/7", Owner{uid, uid}, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := WriteLog(root, "jobs/8", "jobs/8/attempt-1.log", Owner{uid + 1, uid + 1}, "another user's\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "jobs/8"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Root is 65534, ann and the probe's account are themselves; root
	// has no power over the files of anyone else (unmapped ids), as root
	// on an NFS client has none over anyone's.
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}, {ContainerID: uid, HostID: uid, Size: 1},
		{ContainerID: probeUID, HostID: probeUID, Size: 1}}
	if err := MkdirAll(root, "home/cat", Owner{uid + 3, uid + 3}, 0o700); err != nil {
		t.Fatal(err)
	}
	// A copy of this test binary that 65534 may run.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(filepath.Dir(root), "share.test")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestSquashedNode$", "-test.v")
	cmd.Env = append(os.Environ(), "DSPOOL_SQUASHED_SHARE="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                idmap,
		GidMappings:                idmap,
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0}, // 65534 outside
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("no user namespaces here: %v", err)
		}
		t.Fatalf("node side: %v\n%s", err, out)
	}
	var got squashed
	line := string(out)
	if i := strings.Index(line, "RESULT "); i >= 0 {
		line = line[i+len("RESULT "):]
		line = line[:strings.IndexByte(line, '\n')]
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("node side said %s", out)
	}
	if got.Mode != ModeSquashed || got.ProbeErr != "" {
		t.Errorf("Probe = %q, %q; want %q", got.Mode, got.ProbeErr, ModeSquashed)
	}
	if !strings.Contains(got.MakeHome, "permission denied") {
		t.Errorf("making a missing home as squashed root: %q, want permission denied", got.MakeHome)
	}
	if got.MadeForUs != "" || got.AsUser != "" {
		t.Errorf("working in what the control plane made: %q, %q", got.MadeForUs, got.AsUser)
	}
	if got.LogOwner != uid || got.WorkOwner != uid {
		t.Errorf("made as the user: log uid %d, directory uid %d; want %d", got.LogOwner, got.WorkOwner, uid)
	}
	if got.ReadOthers == "" {
		t.Error("squashed root read another user's private log")
	}
	if _, err := os.Stat(filepath.Join(root, "home/bob")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("squashed root made home/bob: %v", err)
	}
}

// TestSquashedNode is the node's side of TestProbeWhereRootIsSquashed.
func TestSquashedNode(t *testing.T) {
	root := os.Getenv("DSPOOL_SQUASHED_SHARE")
	if root == "" {
		t.Skip("run by TestProbeWhereRootIsSquashed")
	}
	const uid = 5000
	var r squashed
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	mode, err := Probe(root)
	r.Mode, r.ProbeErr = mode, errText(err)
	r.MakeHome = errText(MkdirAll(root, "home/bob", Owner{uid + 2, uid + 2}, 0o700))
	o := Owner{uid, uid}
	// Passing into cat's home needs no right to read it.
	r.MadeForUs = errText(MkdirAll(root, "home/cat", Owner{uid + 3, uid + 3}, 0o700))
	r.AsUser = errText(As(uid, uid, func() error {
		if err := MkdirAll(root, "home/ann/work", o, 0o750); err != nil {
			return err
		}
		f, err := OpenFile(root, "jobs/7/attempt-1.log", o, 0o640)
		if err != nil {
			return err
		}
		return f.Close()
	}))
	if st, err := os.Stat(filepath.Join(root, "jobs/7/attempt-1.log")); err == nil {
		r.LogOwner = int(st.Sys().(*syscall.Stat_t).Uid)
	}
	if st, err := os.Stat(filepath.Join(root, "home/ann/work")); err == nil {
		r.WorkOwner = int(st.Sys().(*syscall.Stat_t).Uid)
	}
	f, err := Open(root, "jobs/8/attempt-1.log", Owner{uid + 1, uid + 1})
	if err == nil {
		f.Close()
	}
	r.ReadOthers = errText(err)
	b, _ := json.Marshal(r)
	t.Logf("RESULT %s\n", b)
}
