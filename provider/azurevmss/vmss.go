// Package azurevmss is the provider whose nodes are the instances of an
// Azure virtual machine scale set (Uniform orchestration, Manual upgrade
// policy) that a team already has, with its image, size and network. It
// grows a pool by raising the scale set's capacity, in the same request
// that sets the model's custom data: a cloud-init document that mounts the
// share and starts `dspool agent` with the join tokens of that growth; it
// shrinks a pool by deleting the very instances the autoscaler chose
// (deleteInstances), never by lowering the capacity. It talks to Azure
// Resource Manager through the Azure SDK for Go, whose pipeline honours
// throttling (429 with Retry-After) and polls long-running operations.
package azurevmss

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// Name is the provider's kind.
const Name = "azure-vmss"

// engine names Azure in errors and events.
const engine = "azure"

// Options configures a Provider.
type Options struct {
	// Share is the default of a pool's share setting.
	Share  string
	Logger *slog.Logger
	// Credential signs the calls (nil: azidentity's default chain:
	// environment, workload identity, managed identity, Azure CLI).
	Credential azcore.TokenCredential
	// Transport sends the requests (nil: Go's HTTP client); Retry is
	// azcore's retry policy (zero: its defaults, which honour
	// Retry-After); PollFrequency how often a long-running operation is
	// asked about when Azure gives no Retry-After (default 10 s).
	Transport     policy.Transporter
	Retry         policy.RetryOptions
	PollFrequency time.Duration
	// Timeout bounds one call, and a removal's wait for Azure to delete
	// the instances (default 10 min).
	Timeout time.Duration
}

// Provider runs pools' nodes as scale set instances; it implements
// autoscale.Provider.
type Provider struct {
	opts Options
	cred azcore.TokenCredential

	mu      sync.Mutex
	clients map[string]*clients    // by endpoint and subscription
	locks   map[string]*sync.Mutex // one growth or removal at a time per scale set
	evicted map[string]bool        // "set/ID": instances being deleted after eviction or failure

	calls sync.Map // "METHOD what" -> *atomic.Int64

	// bg is the context of the work that outlives a call: following a
	// growth's operation to its end, deleting failed and evicted
	// instances; Close ends it.
	bg   context.Context
	stop context.CancelFunc
}

var _ autoscale.Provider = (*Provider)(nil)

type clients struct {
	sets *armcompute.VirtualMachineScaleSetsClient
	vms  *armcompute.VirtualMachineScaleSetVMsClient
}

// New returns a provider.
func New(opts Options) (*Provider, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.PollFrequency == 0 {
		opts.PollFrequency = 10 * time.Second
	}
	p := &Provider{opts: opts, cred: opts.Credential, clients: map[string]*clients{}, locks: map[string]*sync.Mutex{},
		evicted: map[string]bool{}}
	p.bg, p.stop = context.WithCancel(context.Background())
	return p, nil
}

// Close stops what the provider does in the background; Azure goes on
// with the operations it took.
func (p *Provider) Close() { p.stop() }

// Calls returns how many requests were sent to Azure, by method and what
// they were about (retries count).
func (p *Provider) Calls() map[string]int64 {
	out := map[string]int64{}
	p.calls.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// countCalls is a pipeline policy that counts every request sent.
type countCalls struct{ p *Provider }

func (c countCalls) Do(req *policy.Request) (*http.Response, error) {
	r := req.Raw()
	what := "scale set"
	switch path := r.URL.Path; {
	case strings.Contains(path, "/operations/") || strings.Contains(path, "Operations/"):
		what = "operation"
	case strings.HasSuffix(path, "/delete"):
		what = "delete instances"
	case strings.Contains(path, "/virtualMachines"):
		what = "instances"
	}
	v, _ := c.p.calls.LoadOrStore(r.Method+" "+what, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	return req.Next()
}

func (p *Provider) clientsFor(s *Settings) (*clients, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := s.Endpoint + "|" + s.Subscription
	if c := p.clients[key]; c != nil {
		return c, nil
	}
	if p.cred == nil {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, &autoscale.Error{Class: autoscale.ClassOther, Engine: engine, Err: err,
				Message: "no Azure credential: give the control plane a managed identity, workload identity or AZURE_* variables (" + err.Error() + ")"}
		}
		p.cred = cred
	}
	cfg := cloud.AzurePublic
	if s.Endpoint != DefaultEndpoint {
		cfg = cloud.Configuration{ActiveDirectoryAuthorityHost: cloud.AzurePublic.ActiveDirectoryAuthorityHost,
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: s.Endpoint, Audience: s.Endpoint}}}
	}
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cfg, Retry: p.opts.Retry,
		PerRetryPolicies: []policy.Policy{countCalls{p}}}}
	if p.opts.Transport != nil {
		opts.Transport = p.opts.Transport
	}
	sets, err := armcompute.NewVirtualMachineScaleSetsClient(s.Subscription, p.cred, opts)
	if err != nil {
		return nil, err
	}
	vms, err := armcompute.NewVirtualMachineScaleSetVMsClient(s.Subscription, p.cred, opts)
	if err != nil {
		return nil, err
	}
	c := &clients{sets: sets, vms: vms}
	p.clients[key] = c
	return c, nil
}

func (p *Provider) lock(s *Settings) *sync.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := s.Subscription + "/" + s.ResourceGroup + "/" + s.ScaleSet
	if p.locks[key] == nil {
		p.locks[key] = &sync.Mutex{}
	}
	return p.locks[key]
}

func (p *Provider) settings(pool *dspool.Pool) (*Settings, error) {
	var s Settings
	if err := autoscale.DecodeSettings(pool, &s); err != nil {
		return nil, fmt.Errorf("azure settings of pool %s: %w", pool.Name, err)
	}
	if s.Share == "" {
		s.Share = p.opts.Share
	}
	return &s, nil
}

// Grow raises the scale set's capacity by the joins' count, setting the
// model's custom data to start agents with those joins' tokens, and names
// the instances that appear.
func (p *Provider) Grow(ctx context.Context, req autoscale.GrowRequest) ([]string, error) {
	if req.N() == 0 {
		return nil, nil
	}
	s, err := p.settings(req.Pool)
	if err != nil {
		return nil, err
	}
	c, err := p.clientsFor(s)
	if err != nil {
		return nil, err
	}
	mu := p.lock(s)
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()

	got, err := c.sets.Get(ctx, s.ResourceGroup, s.ScaleSet, nil)
	if err != nil {
		return nil, classify(err, s)
	}
	set := got.VirtualMachineScaleSet
	if err := usable(&set, s); err != nil {
		return nil, err
	}
	before, err := p.instances(ctx, c, s)
	if err != nil {
		return nil, err
	}
	capacity := int64(0)
	if set.SKU != nil && set.SKU.Capacity != nil {
		capacity = *set.SKU.Capacity
	}
	data := base64.StdEncoding.EncodeToString([]byte(cloudInit(req.Pool, s, req.Joins)))
	update := armcompute.VirtualMachineScaleSetUpdate{
		SKU: &armcompute.SKU{Name: set.SKU.Name, Tier: set.SKU.Tier, Capacity: to(capacity + int64(req.N()))},
		Properties: &armcompute.VirtualMachineScaleSetUpdateProperties{VirtualMachineProfile: &armcompute.VirtualMachineScaleSetUpdateVMProfile{
			OSProfile: &armcompute.VirtualMachineScaleSetUpdateOSProfile{CustomData: &data}}},
	}
	poller, err := c.sets.BeginUpdate(ctx, s.ResourceGroup, s.ScaleSet, update, nil)
	if err != nil {
		return nil, classify(err, s)
	}
	// The new instances are listed as soon as Azure took the request;
	// the operation runs on while they boot, and how it ends is what their
	// provisioning states say.
	go p.await(poller, s, "raise the capacity")
	var names []string
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		after, err := p.instances(ctx, c, s)
		if err != nil {
			return names, err
		}
		names = names[:0]
		for _, vm := range after {
			if !slices.ContainsFunc(before, func(b instance) bool { return b.id == vm.id }) {
				names = append(names, vm.name)
			}
		}
		if len(names) >= req.N() {
			break
		}
		select {
		case <-ctx.Done():
			return names, &autoscale.Error{Class: autoscale.ClassOther, Engine: engine, Err: ctx.Err(),
				Message: fmt.Sprintf("scale set %s took the new capacity, but only %d of its %d new instances were listed in time", s.ScaleSet, len(names), req.N())}
		case <-time.After(wait):
		}
	}
	p.opts.Logger.Info("azure: raised a scale set's capacity", "pool", req.Pool.Name, "scale_set", s.ScaleSet,
		"capacity", capacity+int64(req.N()), "nodes", names)
	return names[:req.N()], nil
}

// await polls a growth's operation to its end, and logs a failure.
func (p *Provider) await(poller *runtime.Poller[armcompute.VirtualMachineScaleSetsClientUpdateResponse], s *Settings, what string) {
	ctx, cancel := context.WithTimeout(p.bg, p.opts.Timeout)
	defer cancel()
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency}); err != nil && p.bg.Err() == nil {
		p.opts.Logger.Warn("azure: an operation on a scale set failed", "scale_set", s.ScaleSet, "operation", what, "err", classify(err, s))
	}
}

// usable checks that the scale set can be a pool's: Uniform, with the
// Manual upgrade policy (a changed model would otherwise reimage the
// running nodes), and Spot where the settings say so.
func usable(set *armcompute.VirtualMachineScaleSet, s *Settings) error {
	refuse := func(format string, a ...any) error {
		return &autoscale.Error{Class: autoscale.ClassUnschedulable, Engine: engine, Message: fmt.Sprintf(format, a...)}
	}
	pr := set.Properties
	if set.SKU == nil || pr == nil {
		return refuse("scale set %s has no sku or properties", s.ScaleSet)
	}
	if pr.OrchestrationMode != nil && *pr.OrchestrationMode != armcompute.OrchestrationModeUniform {
		return refuse("scale set %s is in %s orchestration: the provider needs Uniform", s.ScaleSet, *pr.OrchestrationMode)
	}
	if pr.UpgradePolicy == nil || pr.UpgradePolicy.Mode == nil || *pr.UpgradePolicy.Mode != armcompute.UpgradeModeManual {
		mode := "Automatic"
		if pr.UpgradePolicy != nil && pr.UpgradePolicy.Mode != nil {
			mode = string(*pr.UpgradePolicy.Mode)
		}
		return refuse("scale set %s has the %s upgrade policy: set it to Manual (az vmss update --set upgradePolicy.mode=Manual), or each new node's custom data would reimage the running ones", s.ScaleSet, mode)
	}
	spot := pr.VirtualMachineProfile != nil && pr.VirtualMachineProfile.Priority != nil && *pr.VirtualMachineProfile.Priority == armcompute.VirtualMachinePriorityTypesSpot
	if spot != s.Spot {
		return refuse("scale set %s has %s instances but the pool's spot setting is %v: make them agree", s.ScaleSet, map[bool]string{true: "Spot", false: "regular"}[spot], s.Spot)
	}
	return nil
}

// instance is a scale set instance as the provider reads it.
type instance struct {
	id, name    string
	created     time.Time
	provisioned string // Creating, Succeeded, Failed, Deleting...
	power       string // running, deallocated, stopped... ("" unknown)
	failure     string // the failed provisioning's code and message
}

func (p *Provider) instances(ctx context.Context, c *clients, s *Settings) ([]instance, error) {
	var out []instance
	pager := c.vms.NewListPager(s.ResourceGroup, s.ScaleSet, &armcompute.VirtualMachineScaleSetVMsClientListOptions{Expand: to("instanceView")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, classify(err, s)
		}
		for _, vm := range page.Value {
			if vm == nil || vm.InstanceID == nil {
				continue
			}
			in := instance{id: *vm.InstanceID, name: deref(vm.Name)}
			if pr := vm.Properties; pr != nil {
				if pr.OSProfile != nil && pr.OSProfile.ComputerName != nil {
					in.name = *pr.OSProfile.ComputerName
				}
				in.provisioned = deref(pr.ProvisioningState)
				if pr.TimeCreated != nil {
					in.created = *pr.TimeCreated
				}
				if iv := pr.InstanceView; iv != nil {
					for _, st := range iv.Statuses {
						code := deref(st.Code)
						if power, ok := strings.CutPrefix(code, "PowerState/"); ok {
							in.power = power
						}
						if strings.HasPrefix(code, "ProvisioningState/failed") {
							in.failure = strings.TrimPrefix(code, "ProvisioningState/failed/") + ": " + deref(st.Message)
						}
					}
				}
			}
			out = append(out, in)
		}
	}
	return out, nil
}

// List lists the scale set's instances: creating while provisioned, failed
// with Azure's words when provisioning failed (then deleted), running
// otherwise. An evicted Spot instance is deleted and not listed: its node
// is lost, and its work retried elsewhere.
func (p *Provider) List(ctx context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	s, err := p.settings(pool)
	if err != nil {
		return nil, err
	}
	c, err := p.clientsFor(s)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	vms, err := p.instances(ctx, c, s)
	if err != nil {
		return nil, err
	}
	var out []autoscale.Instance
	var gone []string
	p.mu.Lock()
	for _, vm := range vms {
		key := s.Subscription + "/" + s.ResourceGroup + "/" + s.ScaleSet + "/" + vm.id
		in := autoscale.Instance{Name: vm.name, Created: vm.created, State: autoscale.InstanceRunning}
		if in.Created.IsZero() {
			in.Created = time.Now()
		}
		switch {
		case strings.EqualFold(vm.provisioned, "Deleting"):
			continue
		case strings.EqualFold(vm.provisioned, "Failed"):
			in.State = autoscale.InstanceFailed
			in.Err = failure(vm.failure, s)
			if !p.evicted[key] {
				p.evicted[key] = true
				gone = append(gone, vm.id)
			}
		case s.Spot && (vm.power == "deallocated" || vm.power == "deallocating" || vm.power == "stopped"):
			if !p.evicted[key] {
				p.evicted[key] = true
				gone = append(gone, vm.id)
				p.opts.Logger.Info("azure: a Spot instance was evicted", "pool", pool.Name, "node", vm.name, "instance", vm.id)
			}
			continue
		case !strings.EqualFold(vm.provisioned, "Succeeded"):
			in.State = autoscale.InstanceCreating
			in.Err = &autoscale.Error{Class: autoscale.ClassCapacity, Engine: engine,
				Message: fmt.Sprintf("instance %s of scale set %s is %s", vm.id, s.ScaleSet, strings.ToLower(vm.provisioned))}
		}
		out = append(out, in)
	}
	// What was deleted is forgotten once Azure no longer lists it.
	prefix := s.Subscription + "/" + s.ResourceGroup + "/" + s.ScaleSet + "/"
	for key := range p.evicted {
		if id, ok := strings.CutPrefix(key, prefix); ok && !slices.ContainsFunc(vms, func(vm instance) bool { return vm.id == id }) {
			delete(p.evicted, key)
		}
	}
	p.mu.Unlock()
	if len(gone) > 0 {
		// Failed and evicted instances hold capacity: they go.
		go func() {
			ctx, cancel := context.WithTimeout(p.bg, p.opts.Timeout)
			defer cancel()
			if err := p.deleteInstances(ctx, c, s, gone); err != nil && p.bg.Err() == nil {
				p.opts.Logger.Warn("azure: delete failed or evicted instances", "scale_set", s.ScaleSet, "instances", gone, "err", err)
			}
		}()
	}
	return out, nil
}

// Remove deletes the named instances with one deleteInstances, which
// lowers the capacity by as many. It returns once Azure took the request;
// the operation is followed to its end in the background (an instance
// whose deletion failed lists again, as a machine no node holds).
func (p *Provider) Remove(ctx context.Context, pool *dspool.Pool, names []string) error {
	if len(names) == 0 {
		return nil
	}
	s, err := p.settings(pool)
	if err != nil {
		return err
	}
	c, err := p.clientsFor(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	vms, err := p.instances(ctx, c, s)
	if err != nil {
		return err
	}
	var ids []string
	for _, vm := range vms {
		if slices.Contains(names, vm.name) && !strings.EqualFold(vm.provisioned, "Deleting") {
			ids = append(ids, vm.id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return p.deleteInstances(ctx, c, s, ids)
}

// deleteInstances asks Azure to delete instances ids of the scale set, and
// follows the operation in the background.
func (p *Provider) deleteInstances(ctx context.Context, c *clients, s *Settings, ids []string) error {
	mu := p.lock(s)
	mu.Lock()
	defer mu.Unlock()
	req := armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs{}
	for _, id := range ids {
		req.InstanceIDs = append(req.InstanceIDs, to(id))
	}
	poller, err := c.sets.BeginDeleteInstances(ctx, s.ResourceGroup, s.ScaleSet, req, nil)
	if err != nil {
		return classify(err, s)
	}
	p.opts.Logger.Info("azure: deleting scale set instances", "scale_set", s.ScaleSet, "instances", ids)
	go func() {
		ctx, cancel := context.WithTimeout(p.bg, p.opts.Timeout)
		defer cancel()
		if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency}); err != nil && p.bg.Err() == nil {
			p.opts.Logger.Warn("azure: deleting scale set instances failed", "scale_set", s.ScaleSet, "instances", ids, "err", classify(err, s))
		}
	}()
	return nil
}

// classify turns what Azure answered into an *autoscale.Error in its own
// words: its error code and message.
func classify(err error, s *Settings) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		var ae *autoscale.Error
		if errors.As(err, &ae) {
			return err
		}
		return &autoscale.Error{Class: autoscale.ClassOther, Engine: engine, Message: err.Error(), Err: err}
	}
	code, msg := re.ErrorCode, ""
	if re.RawResponse != nil && re.RawResponse.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(re.RawResponse.Body, 64<<10))
		var body struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(b, &body) == nil {
			if body.Error.Code != "" {
				code = body.Error.Code
			}
			msg = body.Error.Message
		}
	}
	if msg == "" {
		msg = http.StatusText(re.StatusCode)
	}
	e := failure(code+": "+msg, s)
	e.Err = err
	switch {
	case re.StatusCode == http.StatusNotFound:
		e.Class = autoscale.ClassUnschedulable
		e.Message = fmt.Sprintf("%s (scale set %s in resource group %s of subscription %s)", e.Message, s.ScaleSet, s.ResourceGroup, s.Subscription)
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		e.Class = autoscale.ClassOther
		e.Message += " (the control plane's identity needs Virtual Machine Contributor on the scale set)"
	case re.StatusCode == http.StatusTooManyRequests:
		e.Class = autoscale.ClassCapacity
	}
	return e
}

// failure classes a provisioning failure or an error by Azure's code.
func failure(what string, s *Settings) *autoscale.Error {
	code, _, _ := strings.Cut(what, ":")
	class := autoscale.ClassOther
	switch {
	case containsAny(code, "QuotaExceeded", "OperationNotAllowed") && strings.Contains(strings.ToLower(what), "quota"),
		containsAny(code, "QuotaExceeded", "SubscriptionRequestsThrottled"):
		class = autoscale.ClassQuota
	case containsAny(code, "AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest", "SkuNotAvailable",
		"SpotVMEvictionRateTooHigh", "OverconstrainedZonalAllocationRequest"):
		class = autoscale.ClassCapacity
	case containsAny(code, "ImageNotFound", "PlatformImageNotFound", "InvalidImageReference", "GalleryImageNotFound"):
		class = autoscale.ClassImage
	case containsAny(code, "ResourceNotFound", "ResourceGroupNotFound", "InvalidParameter", "NotFound"):
		class = autoscale.ClassUnschedulable
	}
	if what == "" || what == ": " {
		what = "an instance of scale set " + s.ScaleSet + " failed to provision"
	}
	return &autoscale.Error{Class: class, Engine: engine, Message: what}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func to[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
