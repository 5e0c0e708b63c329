package server_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// writeAccounts gives an agent's machine these account files.
func writeAccounts(t *testing.T, etc, passwd, group string) {
	t.Helper()
	for name, text := range map[string]string{"passwd": passwd, "group": group} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// nodeAccounts waits until the node's accounts are want.
func nodeAccounts(t *testing.T, p *dspooltest.Pool, want []dspool.HostAccount) {
	t.Helper()
	var got []dspool.HostAccount
	p.Eventually(10*time.Second, func() bool {
		nodes, err := p.Admin.Nodes(context.Background(), dspool.DefaultPool)
		if err != nil || len(nodes) != 1 {
			return false
		}
		got = nodes[0].Accounts
		return reflect.DeepEqual(got, want)
	}, "node accounts %+v (last %+v)", want, &got)
}

// TestAccountsOnNodes: an agent reports the accounts of its machine in the
// store's uid range; new users skip the uids they hold, with warnings that
// name them; a user whose uid an account takes later gets no work on that
// node, and the job's waiting message says why, until the account goes.
func TestAccountsOnNodes(t *testing.T) {
	const base = 47700
	p := dspooltest.New(t, dspooltest.Options{UIDBase: base})
	ctx := context.Background()
	etc := t.TempDir()
	passwd := "root:x:0:0::/root:/bin/sh\nadmin47700:x:47700:47700::/h:/bin/sh\nghost:x:47701:47701::/h:/bin/sh\nbea:x:47900:47900::/h:/bin/sh\nfar:x:49999:1::/h:/bin/sh\n"
	group := "root:x:0:\nadmin47700:x:47700:\nlab:x:47702:\n"
	writeAccounts(t, etc, passwd, group)
	p.AddAgent(dspool.DefaultPool, agent.Config{EtcDir: etc, CPUs: 2000, Memory: 2 << 30})
	p.WaitReady(dspool.DefaultPool, 1)
	nodeAccounts(t, p, []dspool.HostAccount{{Name: "ghost", ID: 47701}, {Name: "lab", ID: 47702, Group: true}, {Name: "bea", ID: 47900}})

	ann, err := p.Admin.NewUser(ctx, api.UserCreate{Name: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	if ann.UID != 47703 || ann.GID != 47703 {
		t.Errorf("ann got uid %d gid %d, want 47703: 47701 and 47702 are held on the node", ann.UID, ann.GID)
	}
	warned := strings.Join(ann.Warnings, "\n")
	for _, want := range []string{"uid 47701 was not given: account ghost (uid 47701) holds it on node default-0", "uid 47702 was not given: group lab (gid 47702)"} {
		if !strings.Contains(warned, want) {
			t.Errorf("warnings %q, want one saying %q", warned, want)
		}
	}
	// A user named after an account left on a node gets its uid.
	bea, err := p.Admin.NewUser(ctx, api.UserCreate{Name: "bea"})
	if err != nil {
		t.Fatal(err)
	}
	if bea.UID != 47900 || len(bea.Warnings) != 0 {
		t.Errorf("bea got uid %d, warnings %q; want 47900, the uid of her account on the node, and none", bea.UID, bea.Warnings)
	}
	nodeAccounts(t, p, []dspool.HostAccount{{Name: "ghost", ID: 47701}, {Name: "lab", ID: 47702, Group: true}})

	// An account takes ann's uid on the node: her work waits, and says why.
	writeAccounts(t, etc, passwd+"intruder:x:47703:5::/h:/bin/sh\n", group)
	nodeAccounts(t, p, []dspool.HostAccount{{Name: "ghost", ID: 47701}, {Name: "lab", ID: 47702, Group: true}, {Name: "intruder", ID: 47703}})
	annc := p.ClientFor(&ann.User)
	j := submit(t, annc, dspool.JobSpec{Command: []string{"true"}})
	p.Eventually(10*time.Second, func() bool {
		d, err := annc.Job(ctx, j.ID)
		if err != nil {
			return false
		}
		j = d.Job
		return strings.Contains(j.Waiting, "uid 47703 of user ann is taken on node default-0 by account intruder (uid 47703)")
	}, "job %d waiting for the account to go (last %+v)", j.ID, &j)
	t.Logf("waiting: %s", j.Waiting)
	if j.State != dspool.JobQueued {
		t.Fatalf("job %d is %s, want queued", j.ID, j.State)
	}
	// Others' work still runs there.
	if done := p.Wait(p.Admin, submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}}).ID); done.State != dspool.JobSucceeded {
		t.Errorf("admin's job: %s (%s), want succeeded", done.State, done.Message)
	}
	writeAccounts(t, etc, passwd, group)
	if done := p.Wait(annc, j.ID); done.State != dspool.JobSucceeded {
		t.Errorf("ann's job once the account is gone: %s (%s), want succeeded", done.State, done.Message)
	}
}
