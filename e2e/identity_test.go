package e2e_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// addAccount creates an OS account (and its group) with this uid, removed
// when the test ends: what another store, or an admin, left on the machine.
func addAccount(t *testing.T, name string, uid int) {
	t.Helper()
	removeAccount(t, name)
	if out, err := exec.Command("useradd", "-u", strconv.Itoa(uid), "-U", "-M", "-s", "/bin/false", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { removeAccount(t, name) })
}

// TestIdentityAcrossStores: an account on this machine holds a uid of the
// store's range. `dspool up` names it at start and suggests a --uid-base;
// a new user skips its uid, with a warning; an account that takes a user's
// uid later closes the node to their work, which waits saying why and runs
// once the account is gone.
func TestIdentityAcrossStores(t *testing.T) {
	requireRoot(t)
	base := uidBase(71)
	addAccount(t, "e2eother71", base+1)
	ann, bob := "e2eid71a", "e2eid71b"
	removeAccountAfter(t, ann)
	removeAccountAfter(t, bob)
	up := startUp(t, upConfig{UIDBase: base})
	eventually(t, 10*time.Second, "dspool up to warn of the account in its uid range", func() bool {
		b, _ := os.ReadFile(up.stderr)
		return strings.Contains(string(b), "e2eother71") && strings.Contains(string(b), "--uid-base")
	})

	out, errOut, code := cli(t, up.env(), "user", "create", ann, "-o", "json")
	var u dspool.User
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil {
		t.Fatalf("user create %s: exit %d: %s %s", ann, code, out, errOut)
	}
	if u.UID == base+1 {
		t.Errorf("%s got uid %d, which account e2eother71 holds on the node", ann, u.UID)
	}
	if want := "uid " + strconv.Itoa(base+1) + " was not given: account e2eother71"; !strings.Contains(errOut, want) {
		t.Errorf("user create said %q, want a warning with %q", errOut, want)
	}
	var nodes []*dspool.Node
	cliJSON(t, up.env(), &nodes, "node", "list")
	if len(nodes) != 1 || !hasAccount(nodes[0], "e2eother71") {
		t.Errorf("node list shows accounts %+v, want e2eother71 among them", nodes)
	}

	// An account takes bob's uid before his first job: the job waits and
	// says why, and runs once the account is gone.
	b, bobToken := up.createUser(t, bob)
	addAccount(t, "e2eother71b", b.UID)
	env := up.userEnv(bobToken)
	eventually(t, 10*time.Second, "the node to report the account that holds bob's uid", func() bool {
		return strings.Contains(cliOK(t, up.env(), "node", "show", nodes[0].Name), "e2eother71b")
	})
	id := submit(t, env, "--", "true")
	want := "uid " + strconv.Itoa(b.UID) + " of user " + bob + " is taken on node " + nodes[0].Name + " by account e2eother71b"
	eventually(t, 10*time.Second, "bob's job to wait, saying why", func() bool {
		j := job(t, env, id)
		return j.State == dspool.JobQueued && strings.Contains(j.Waiting, want)
	})
	removeAccount(t, "e2eother71b")
	if j := waitState(t, env, id, dspool.JobSucceeded, 30*time.Second); j.Node != nodes[0].ID {
		t.Errorf("bob's job ran on %s, want %s", j.Node, nodes[0].ID)
	}
}

func hasAccount(n *dspool.Node, name string) bool {
	for _, a := range n.Accounts {
		if a.Name == name {
			return true
		}
	}
	return false
}

// TestUpNodeSizeFollowsNodes: a store made with one node, started again
// with --nodes 2, splits the machine in two instead of advertising it
// twice.
func TestUpNodeSizeFollowsNodes(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(72)})
	one := up.waitNodes(t, "default", 1)[0].Inventory
	up.Stop()
	again := startUp(t, upConfig{UIDBase: uidBase(72), Nodes: 2, Data: up.Data, Login: up.Login})
	again.waitNodes(t, "default", 2)
	wantCPUs, wantMem := max(one.CPUs/2, 1000), one.Memory/2
	var nodes []*dspool.Node
	eventually(t, 30*time.Second, "two nodes of half the machine", func() bool {
		var all []*dspool.Node
		cliJSON(t, again.env(), &all, "node", "list", "--pool", "default")
		nodes = connectedReady(all)
		ok := len(nodes) == 2
		for _, n := range nodes {
			ok = ok && n.Inventory.CPUs == wantCPUs && n.Inventory.Memory == wantMem
		}
		return ok
	})
	for _, n := range nodes {
		t.Logf("node %s: %s cpus, %s (the machine: %s cpus, %s)", n.Name, n.Inventory.CPUs, n.Inventory.Memory, one.CPUs, one.Memory)
	}
}
