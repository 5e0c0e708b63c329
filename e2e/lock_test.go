package e2e_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSecondUpOnSameDataIsRefused: two control planes on one data directory
// would share a store, a share and local agents' identities; the second is
// refused with a message naming the directory, and the first keeps working.
func TestSecondUpOnSameDataIsRefused(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(8)})
	_, stderr, code := cli(t, []string{"DSPOOL_CONFIG=" + filepath.Join(tempDir(t), "other.json")},
		"up", "--data", up.Data, "--listen", "127.0.0.1:0", "--ssh-listen", "off")
	if code == 0 || !strings.Contains(stderr, "another dspool") || !strings.Contains(stderr, up.Data) {
		t.Fatalf("second up: exit %d, stderr %q; want a refusal naming %s", code, stderr, up.Data)
	}
	nodes := up.waitNodes(t, "default", 1)
	if len(nodes) != 1 {
		t.Errorf("first up lost its node: %v", nodes)
	}
}

// TestCLIErrorsSayWhatToDo: common slips get an error that names the
// problem and shows the right form.
func TestCLIErrorsSayWhatToDo(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(9)})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "show"}, "needs one job id; e.g. dspool job show 12"},
		{[]string{"job", "submit", "--"}, "needs the command to run after --"},
		{[]string{"job", "submit", "--time", "10", "--", "true"}, `"10" has no unit: write e.g. 10s or 10m`},
		{[]string{"job", "submit", "--memory", "4", "--", "true"}, "memory: 4 bytes is out of range"},
		{[]string{"job", "submit", "--cpus", "999", "--memory", "999TiB", "--", "true"}, "asks for 999 cpus (nodes have"},
		{[]string{"job", "show", "424242"}, "job 424242 not found"},
	} {
		_, stderr, code := cli(t, up.env(), tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("dspool %s: exit %d, stderr %q; want it to contain %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	// A pool file given without -f is taken as the file.
	f := writeFile(t, "pool-*.yaml", "name: extra\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\n")
	cliOK(t, up.env(), "pool", "apply", f)
}

// TestUpStartsCleanOrNotAtAll: a start that fails on a busy port leaves no
// store behind, and a store's uid base cannot be changed by a later flag.
func TestUpStartsCleanOrNotAtAll(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(15)})
	busy := strings.TrimPrefix(up.URL, "https://")
	fresh := filepath.Join(tempDir(t), "fresh")
	_, stderr, code := cli(t, []string{"DSPOOL_CONFIG=" + filepath.Join(tempDir(t), "other.json")},
		"up", "--data", fresh, "--listen", "127.0.0.1:0", "--ssh-listen", busy)
	if code == 0 || !strings.Contains(stderr, "--ssh-listen") {
		t.Fatalf("up on a busy SSH port: exit %d, stderr %q; want a refusal naming --ssh-listen", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(fresh, "dspool.db")); !os.IsNotExist(err) {
		t.Fatalf("the failed start left a store: %v", err)
	}
	up.Stop()
	_, stderr, code = cli(t, up.env(), "up", "--data", up.Data, "--listen", "127.0.0.1:0", "--ssh-listen", "off",
		"--uid-base", strconv.Itoa(uidBase(15)+50))
	if code == 0 || !strings.Contains(stderr, "uid base "+strconv.Itoa(uidBase(15))) {
		t.Fatalf("up with another --uid-base on an existing store: exit %d, stderr %q; want a refusal", code, stderr)
	}
}
