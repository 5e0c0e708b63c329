package azurevmss_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/autoscale/providertest"
	"github.com/dspool/dspool/provider/azurevmss"
	"github.com/dspool/dspool/provider/azurevmss/armfake"
	"github.com/dspool/dspool/yamljson"
)

const sub = "0b4a7c52-9f0e-4d7b-8f5c-2d2a7f0e9c11"

var n atomic.Int64

// env is a fake Resource Manager and a provider that talks to it.
type env struct {
	fake *armfake.Server
	prov *azurevmss.Provider
	reg  *autoscale.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fake := armfake.New()
	t.Cleanup(fake.Close)
	opts := azurevmss.Options{Share: "/srv/share", Credential: armfake.Credential{}, Transport: fake.Client(),
		PollFrequency: 10 * time.Millisecond, Timeout: 30 * time.Second,
		Retry: policy.RetryOptions{MaxRetries: 3, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 2 * time.Second}}
	prov, err := azurevmss.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.Close)
	reg, err := autoscale.NewRegistry(azurevmss.Kind(opts))
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: fake, prov: prov, reg: reg}
}

// pool makes a scale set in the fake and a pool of it.
func (e *env) pool(t *testing.T, set *armfake.ScaleSet, extra map[string]any) *dspool.Pool {
	t.Helper()
	if set.Name == "" {
		set.Name = fmt.Sprintf("vmss%d", n.Add(1))
	}
	e.fake.Add(sub, "ml-pool", set)
	s := map[string]json.RawMessage{}
	for k, v := range map[string]any{"subscription": sub, "resource_group": "ml-pool", "scale_set": set.Name, "endpoint": e.fake.URL} {
		s[k], _ = json.Marshal(v)
	}
	for k, v := range extra {
		s[k], _ = json.Marshal(v)
	}
	p := &dspool.Pool{Name: fmt.Sprintf("az%d", n.Add(1)), Provider: dspool.ProviderSpec{Name: azurevmss.Name, Settings: s},
		Node: dspool.NodeSize{CPUs: 2000, Memory: 8 << 30}}
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Check("", p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		e := newEnv(t)
		h := &providertest.Harness{Provider: e.prov, Pool: e.pool(t, &armfake.ScaleSet{}, nil), Other: e.pool(t, &armfake.ScaleSet{}, nil),
			List: azurevmss.Kind(azurevmss.Options{}).List}
		h.Refused = e.pool(t, &armfake.ScaleSet{Refuse: &armfake.Refusal{Status: http.StatusConflict, Code: "OperationNotAllowed",
			Message: "Operation could not be completed as it results in exceeding approved Total Regional Cores quota. Location: westeurope, Current Limit: 10, Current Usage: 10, Additional Required: 2."}}, nil)
		h.RefusedClass = autoscale.ClassQuota
		h.Queued = e.pool(t, &armfake.ScaleSet{Hold: true}, nil)
		return h
	})
}

// customData is the cloud-config the machines of the last growth of set
// were made with.
func customData(t *testing.T, e *env, set *armfake.ScaleSet) string {
	t.Helper()
	ins := e.fake.Instances(set)
	if len(ins) == 0 {
		t.Fatal("no instance")
	}
	b, err := base64.StdEncoding.DecodeString(ins[len(ins)-1].CustomData)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGrowSetsCapacityAndCustomData: a growth is one PATCH that raises
// the capacity by the count and sets custom data that mounts the share,
// keeps the tokens in a file of root's and runs the agent as a service
// with none on its command line.
func TestGrowSetsCapacityAndCustomData(t *testing.T) {
	e := newEnv(t)
	set := &armfake.ScaleSet{Capacity: 0}
	pool := e.pool(t, set, map[string]any{"mount": map[string]string{"source": "acct.file.core.windows.net:/acct/share", "type": "nfs", "options": "vers=4,minorversion=1,sec=sys"}})
	req := providertest.Request(pool, 2)
	names, err := e.prov.Grow(context.Background(), req)
	if err != nil || len(names) != 2 {
		t.Fatalf("Grow(2) = %v, %v", names, err)
	}
	if got := e.fake.Capacity(set); got != 2 {
		t.Fatalf("capacity %d after growing by 2 from 0", got)
	}
	var patches int
	for _, c := range e.fake.Calls() {
		if c.Method == http.MethodPatch {
			patches++
			if !strings.Contains(string(c.Body), `"capacity":2`) {
				t.Errorf("the PATCH: %s", c.Body)
			}
		}
	}
	if patches != 1 {
		t.Errorf("%d PATCHes for one growth, want 1", patches)
	}
	doc := customData(t, e, set)
	js, err := yamljson.Convert([]byte(doc), yamljson.Limits{Nodes: 1000, Aliased: 10, Depth: 10})
	if err != nil || !strings.HasPrefix(doc, "#cloud-config\n") {
		t.Fatalf("custom data is not a cloud-config: %v\n%s", err, doc)
	}
	var cc struct {
		WriteFiles []struct{ Path, Permissions, Content string } `json:"write_files"`
		Mounts     [][]string
		Runcmd     [][]string
	}
	if err := json.Unmarshal(js, &cc); err != nil {
		t.Fatal(err)
	}
	var env, unit string
	for _, f := range cc.WriteFiles {
		switch f.Path {
		case "/etc/dspool/join.env":
			env = f.Content
			if f.Permissions != "0600" {
				t.Errorf("the tokens' file has mode %s", f.Permissions)
			}
		case "/etc/systemd/system/dspool-agent.service":
			unit = f.Content
		}
	}
	if want := "DSPOOL_JOIN_TOKEN=" + req.Joins[0].Token + "," + req.Joins[1].Token + "\n"; env != want {
		t.Errorf("the tokens' file holds %q, want %q", env, want)
	}
	exec := ""
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			exec = v
		}
	}
	if !strings.HasPrefix(exec, "/usr/local/bin/dspool agent --server https://127.0.0.1:1 --pool "+pool.Name+" --name %H --share /srv/share") ||
		!strings.Contains(exec, "--cpus 2 --memory 8589934592") {
		t.Errorf("the agent's command line: %q", exec)
	}
	for _, j := range req.Joins {
		secret, _, _ := strings.Cut(j.Token, ".")
		if strings.Contains(unit, secret) || strings.Contains(fmt.Sprint(cc.Runcmd), secret) {
			t.Errorf("a token is in the unit or a command")
		}
	}
	if len(cc.Mounts) != 1 || strings.Join(cc.Mounts[0], " ") != "acct.file.core.windows.net:/acct/share /srv/share nfs vers=4,minorversion=1,sec=sys,_netdev 0 0" {
		t.Errorf("mounts: %q", cc.Mounts)
	}
	if !strings.Contains(unit, "RequiresMountsFor=/srv/share") {
		t.Errorf("the agent does not wait for the share: %s", unit)
	}
}

// TestRemoveDeletesTheChosenInstances: scale-in is deleteInstances of the
// named ones, waited for, and the capacity is never set lower.
func TestRemoveDeletesTheChosenInstances(t *testing.T) {
	e := newEnv(t)
	set := &armfake.ScaleSet{OpPolls: 3}
	pool := e.pool(t, set, nil)
	names, err := e.prov.Grow(context.Background(), providertest.Request(pool, 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prov.Remove(context.Background(), pool, names[1:2]); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Capacity(set); got != 2 {
		t.Fatalf("capacity %d once the deletion of one of 3 was taken, want 2", got)
	}
	left := func() string {
		var names []string
		for _, in := range e.fake.Instances(set) {
			names = append(names, in.ComputerName)
		}
		return fmt.Sprint(names)
	}
	eventually(t, "the instance to be deleted", func() bool { return left() == fmt.Sprint([]string{names[0], names[2]}) })
	// Its operation is followed to its end.
	eventually(t, "the operation to be polled to its end", func() bool {
		polls := 0
		for _, c := range e.fake.Calls() {
			if strings.Contains(c.Path, "/operations/") && strings.Contains(c.Query, "monitor") {
				polls++
			}
		}
		return polls >= 1
	})
	var deletes int
	for _, c := range e.fake.Calls() {
		switch {
		case c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/delete"):
			deletes++
			if !strings.Contains(string(c.Body), `"instanceIds":["1"]`) {
				t.Errorf("deleteInstances body %s, want instance 1", c.Body)
			}
		case c.Method == http.MethodPatch && !strings.Contains(string(c.Body), `"capacity":3`):
			t.Errorf("a PATCH other than the growth: %s", c.Body)
		}
	}
	if deletes != 1 {
		t.Errorf("%d deleteInstances, want 1", deletes)
	}
}

// TestThrottled: 429 with Retry-After is waited out, not an error.
func TestThrottled(t *testing.T) {
	e := newEnv(t)
	set := &armfake.ScaleSet{}
	pool := e.pool(t, set, nil)
	e.fake.Set(func() { set.Throttle = 2 })
	start := time.Now()
	inst, err := e.prov.List(context.Background(), pool)
	if err != nil || len(inst) != 0 {
		t.Fatalf("List through two 429s: %v, %v", inst, err)
	}
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Errorf("List took %v through two answers of Retry-After: 1", d)
	}
	e.fake.Set(func() { set.Throttle = 10 })
	_, err = e.prov.List(context.Background(), pool)
	var ae *autoscale.Error
	if !errors.As(err, &ae) || ae.Class != autoscale.ClassCapacity || !strings.Contains(ae.Message, "TooManyRequests") {
		t.Fatalf("List throttled past the retries: %v", err)
	}
}

// TestRefusals: what Azure refuses comes back classed, in its words, and a
// scale set the provider must not drive is refused before any change.
func TestRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		set   *armfake.ScaleSet
		class autoscale.Class
		words string
	}{
		{&armfake.ScaleSet{Upgrade: "Automatic"}, autoscale.ClassUnschedulable, "set it to Manual"},
		{&armfake.ScaleSet{Flexible: true}, autoscale.ClassUnschedulable, "Flexible orchestration"},
		{&armfake.ScaleSet{Spot: true}, autoscale.ClassUnschedulable, "Spot instances but the pool's spot setting is false"},
		{&armfake.ScaleSet{Refuse: &armfake.Refusal{Status: 409, Code: "SkuNotAvailable", Message: "The requested VM size Standard_ND96 is not available in the current region."}},
			autoscale.ClassCapacity, "SkuNotAvailable: The requested VM size"},
	}
	for _, c := range cases {
		pool := e.pool(t, c.set, nil)
		_, err := e.prov.Grow(ctx, providertest.Request(pool, 1))
		var ae *autoscale.Error
		if !errors.As(err, &ae) || ae.Class != c.class || !strings.Contains(ae.Message, c.words) || ae.Engine != "azure" {
			t.Errorf("Grow of %+v: %v; want class %s with %q", c.set, err, c.class, c.words)
		}
		if e.fake.Capacity(c.set) != 0 {
			t.Errorf("the refused scale set %s grew", c.set.Name)
		}
	}
	// A scale set that does not exist.
	pool := e.pool(t, &armfake.ScaleSet{}, nil)
	pool.Provider.Settings["scale_set"] = json.RawMessage(`"nosuch"`)
	_, err := e.prov.Grow(ctx, providertest.Request(pool, 1))
	if autoscale.ClassOf(err) != autoscale.ClassUnschedulable || !strings.Contains(err.Error(), "ResourceNotFound") {
		t.Errorf("Grow of a scale set that is not there: %v", err)
	}
}

// TestFailedAndEvicted: an instance that failed to provision lists as
// failed in Azure's words and is deleted; an evicted Spot instance is not
// listed and is deleted.
func TestFailedAndEvicted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bad := &armfake.ScaleSet{FailProvisioning: "AllocationFailed"}
	pool := e.pool(t, bad, nil)
	names, err := e.prov.Grow(ctx, providertest.Request(pool, 1))
	if err != nil {
		t.Fatal(err)
	}
	var inst []autoscale.Instance
	deadline := time.Now().Add(10 * time.Second)
	for {
		if inst, err = e.prov.List(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if len(inst) == 1 && inst[0].State == autoscale.InstanceFailed || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(inst) != 1 || inst[0].Name != names[0] || inst[0].State != autoscale.InstanceFailed || inst[0].Err == nil ||
		inst[0].Err.Class != autoscale.ClassCapacity || !strings.Contains(inst[0].Err.Message, "AllocationFailed: Allocation failed") {
		t.Fatalf("an instance that failed to provision lists as %+v (%v)", inst, inst[0].Err)
	}
	eventually(t, "the failed instance to be deleted", func() bool { return len(e.fake.Instances(bad)) == 0 })

	spot := &armfake.ScaleSet{Spot: true}
	sp := e.pool(t, spot, map[string]any{"spot": true})
	names, err = e.prov.Grow(ctx, providertest.Request(sp, 2))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "both to run", func() bool {
		inst, _ := e.prov.List(ctx, sp)
		return len(inst) == 2 && inst[0].State == autoscale.InstanceRunning && inst[1].State == autoscale.InstanceRunning
	})
	if !e.fake.Evict(spot, names[0]) {
		t.Fatal("no such instance to evict")
	}
	inst, err = e.prov.List(ctx, sp)
	if err != nil || len(inst) != 1 || inst[0].Name != names[1] {
		t.Fatalf("after an eviction List gives %+v, %v; want %s alone", inst, err, names[1])
	}
	eventually(t, "the evicted instance to be deleted", func() bool { return len(e.fake.Instances(spot)) == 1 })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSettings(t *testing.T) {
	reg, err := autoscale.NewRegistry(azurevmss.Kind(azurevmss.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]any{"subscription": sub, "resource_group": "ml-pool", "scale_set": "gpu-nodes"}
	tests := []struct {
		change map[string]any
		field  string
	}{
		{map[string]any{"subscription": "my-sub"}, "provider.subscription"},
		{map[string]any{"resource_group": "bad group"}, "provider.resource_group"},
		{map[string]any{"scale_set": "-x"}, "provider.scale_set"},
		{map[string]any{"mount": map[string]string{"source": "x:/y", "type": "ext4"}}, "provider.mount.type"},
		{map[string]any{"mount": map[string]string{"source": "x y", "type": "nfs"}}, "provider.mount.source"},
		{map[string]any{"share": "relative"}, "provider.share"},
		{map[string]any{"endpoint": "http://management.azure.com"}, "provider.endpoint"},
		{map[string]any{"zone": "1"}, "provider.zone"},
	}
	for _, tc := range tests {
		s := map[string]json.RawMessage{}
		for k, v := range base {
			s[k], _ = json.Marshal(v)
		}
		for k, v := range tc.change {
			s[k], _ = json.Marshal(v)
		}
		p := &dspool.Pool{Name: "gpu", Provider: dspool.ProviderSpec{Name: azurevmss.Name, Settings: s}, Node: dspool.NodeSize{CPUs: 2000, Memory: 8 << 30}}
		if err := p.Normalize(""); err != nil {
			t.Fatal(err)
		}
		err := reg.Check("pools[0].", p)
		var de *dspool.Error
		if !errors.As(err, &de) || de.Field != "pools[0]."+tc.field {
			t.Errorf("%v: %v, want an error naming pools[0].%s", tc.change, err, tc.field)
		}
	}
}
