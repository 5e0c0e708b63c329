package e2e_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/provider/azurevmss/armfake"
)

// TestAzurePool runs a pool whose nodes are the instances of an Azure
// scale set, against a local fake of Resource Manager: the control plane
// signs in with Azure CLI's credential (a stand-in `az` on its PATH) and
// trusts the fake's certificate. For each instance the fake makes, the
// test does what the machine's cloud-init would: it runs the agent of the
// instance's custom data, with the tokens of its file. A job submitted to
// the empty pool runs; the idle node goes with deleteInstances of its own
// instance id, and the capacity is never lowered by a PATCH.
func TestAzurePool(t *testing.T) {
	requireRoot(t)
	fake := armfake.New()
	t.Cleanup(fake.Close)
	const sub, rg = "0b4a7c52-9f0e-4d7b-8f5c-2d2a7f0e9c11", "ml-pool"
	set := fake.Add(sub, rg, &armfake.ScaleSet{Name: "cpu-nodes"})

	// The control plane's view of Azure: the fake's certificate, and an
	// `az` that hands out the fake's token.
	dir := tempDir(t)
	azEnv, err := fake.ProcessEnv(dir, os.Getenv("PATH"))
	if err != nil {
		t.Fatal(err)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(187), Env: azEnv})
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: az
  provider: {name: azure-vmss, subscription: `+sub+`, resource_group: `+rg+`, scale_set: cpu-nodes, endpoint: `+fake.URL+`, share: `+up.Share+`}
  node: {cpus: 1, memory: 512MiB}
  work: [batch]
  autoscale: {min: 0, max: 2, idle_timeout: 3s}
`))

	// The machines: an agent for each instance, from its custom data.
	ctx, stop := context.WithCancel(context.Background())
	machines := make(chan struct{})
	go func() {
		fake.Machines(ctx, set, bin, dir, baseEnv(), func(err error) { t.Errorf("a machine: %v", err) })
		close(machines)
	}()
	t.Cleanup(func() {
		stop()
		<-machines
		states, _ := filepath.Glob(filepath.Join(dir, "*", "state"))
		removeNodeCgroups(states...)
	})

	id := submit(t, up.env(), "--pool", "az", "--", "true")
	j := waitState(t, up.env(), id, dspool.JobSucceeded, 60*time.Second)
	t.Logf("job submitted to an empty Azure pool -> running in %s", j.StartedAt.Sub(j.SubmittedAt).Round(time.Millisecond))
	ins := fake.Instances(set)
	if len(ins) != 1 {
		t.Fatalf("the scale set has %d instances, want 1", len(ins))
	}
	var name string
	for _, n := range up.poolNodes(t, "az") {
		if n.ID == j.Node {
			name = n.Name
		}
	}
	if name != ins[0].ComputerName {
		t.Fatalf("the job ran on node %q, want the instance's machine %s", name, ins[0].ComputerName)
	}
	if evs := up.events(t, "az"); !hasEvent(evs, dspool.EventScaleOut, "added 1 node") {
		t.Fatalf("no scale_out event: %+v", evs)
	}

	eventually(t, 60*time.Second, "the idle node's instance to be deleted", func() bool { return len(fake.Instances(set)) == 0 })
	var deletes []string
	for _, c := range fake.Calls() {
		switch {
		case c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/delete"):
			deletes = append(deletes, string(c.Body))
		case c.Method == http.MethodPatch && !strings.Contains(string(c.Body), `"capacity":1`):
			t.Errorf("a PATCH other than the growth to 1: %s", c.Body)
		case c.Status == http.StatusUnauthorized:
			t.Errorf("a call without the token: %s %s", c.Method, c.Path)
		}
	}
	if len(deletes) != 1 || !strings.Contains(deletes[0], `"instanceIds":["`+ins[0].ID+`"]`) {
		t.Fatalf("deleteInstances calls %q, want one of instance %s", deletes, ins[0].ID)
	}
	if got := fake.Capacity(set); got != 0 {
		t.Fatalf("capacity %d after the node went, want 0", got)
	}
}
