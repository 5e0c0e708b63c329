package azurevmss

import (
	"net/url"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/internal/lazyregexp"
)

// Settings are an Azure scale set pool's provider block:
//
//	provider:
//	  name: azure-vmss
//	  subscription: 00000000-0000-0000-0000-000000000000
//	  resource_group: ml-pool
//	  scale_set: gpu-nodes
//	  mount: {source: "acct.file.core.windows.net:/acct/share", type: nfs, options: "vers=4,minorversion=1,sec=sys"}
type Settings struct {
	// Subscription, ResourceGroup and ScaleSet name an existing scale set
	// in Uniform orchestration with the Manual upgrade policy: its image
	// (with dspool at Dspool), size and network are the team's; the
	// provider sets its capacity and its custom data.
	Subscription  string `json:"subscription"`
	ResourceGroup string `json:"resource_group"`
	ScaleSet      string `json:"scale_set"`
	// Spot says the scale set's instances are Spot: an evicted instance
	// (deallocated by Azure) is deleted, and its node's work is retried
	// elsewhere, as from any node that is lost.
	Spot bool `json:"spot,omitempty"`
	// Dspool is the dspool binary in the image (default
	// /usr/local/bin/dspool); Share where nodes mount the share (default:
	// where the control plane does); State where the agent keeps its
	// identity (default /var/lib/dspool/agent).
	Dspool string `json:"dspool,omitempty"`
	Share  string `json:"share,omitempty"`
	State  string `json:"state,omitempty"`
	// Mount is how a new machine mounts the share at Share (nil: the
	// image does it itself).
	Mount *Mount `json:"mount,omitempty"`
	// Endpoint is the Resource Manager endpoint (default
	// https://management.azure.com; a sovereign cloud's otherwise).
	Endpoint string `json:"endpoint,omitempty"`
}

// Mount is an fstab entry for the share, written by cloud-init.
type Mount struct {
	Source  string `json:"source"`
	Type    string `json:"type"`
	Options string `json:"options,omitempty"`
}

// DefaultEndpoint is Azure's public Resource Manager.
const DefaultEndpoint = "https://management.azure.com"

// The patterns are compiled at their first use: every dspool command
// links this package, few check a pool.
var (
	guidRE  = lazyregexp.New(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	groupRE = lazyregexp.New(`^[-\w.()]{1,90}$`)
	setRE   = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	mountRE = lazyregexp.New(`^[^\s'"\\]{1,1000}$`)
)

// Check validates the settings of pool p and fills their defaults.
func (s *Settings) Check(prefix string, p *dspool.Pool) error {
	f := func(name string) string { return prefix + "provider." + name }
	switch {
	case !guidRE.MatchString(s.Subscription):
		return dspool.Invalid(f("subscription"), "%q is not an Azure subscription id: give its GUID (az account show --query id)", s.Subscription)
	case !groupRE.MatchString(s.ResourceGroup) || strings.HasSuffix(s.ResourceGroup, "."):
		return dspool.Invalid(f("resource_group"), "%q is not a resource group name: 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'", s.ResourceGroup)
	case !setRE.MatchString(s.ScaleSet):
		return dspool.Invalid(f("scale_set"), "%q is not a scale set name: 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit", s.ScaleSet)
	}
	for _, v := range []struct{ name, value string }{{"dspool", s.Dspool}, {"share", s.Share}, {"state", s.State}} {
		if v.value != "" && (!strings.HasPrefix(v.value, "/") || !mountRE.MatchString(v.value)) {
			return dspool.Invalid(f(v.name), "%q must be an absolute path without spaces or quotes", v.value)
		}
	}
	if m := s.Mount; m != nil {
		if !mountRE.MatchString(m.Source) {
			return dspool.Invalid(f("mount.source"), "%q is not a mount source: one word, no quotes", m.Source)
		}
		switch m.Type {
		case "nfs", "nfs4", "cifs", "fuse.sshfs", "virtiofs":
		default:
			return dspool.Invalid(f("mount.type"), "%q is not a file system type the provider mounts: use nfs, nfs4, cifs, fuse.sshfs or virtiofs", m.Type)
		}
		if m.Options != "" && !mountRE.MatchString(m.Options) {
			return dspool.Invalid(f("mount.options"), "%q are not mount options: comma-separated, no spaces or quotes", m.Options)
		}
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" && u.Path != "/" {
			return dspool.Invalid(f("endpoint"), "%q is not a Resource Manager endpoint: give https://HOST, as https://management.usgovcloudapi.net", s.Endpoint)
		}
	}
	if p.Node.CPUs%1000 != 0 {
		return dspool.Invalid(prefix+"node.cpus", "Azure machines have whole cpus: give pool %s a whole number of cpus (the scale set's size)", p.Name)
	}
	if s.Dspool == "" {
		s.Dspool = "/usr/local/bin/dspool"
	}
	if s.State == "" {
		s.State = "/var/lib/dspool/agent"
	}
	if s.Endpoint == "" {
		s.Endpoint = DefaultEndpoint
	}
	return nil
}

// Kind is the provider as the wiring registers it; opts are the defaults
// of its pools.
func Kind(opts Options) autoscale.Kind {
	return autoscale.Kind{
		Name:     Name,
		Settings: func() autoscale.Settings { return &Settings{} },
		New: func(env autoscale.Env) (autoscale.Provider, error) {
			o := opts
			if o.Share == "" {
				o.Share = env.Share
			}
			if o.Logger == nil {
				o.Logger = env.Logger
			}
			return New(o)
		},
		// Resource Manager allows a subscription about 12,000 reads an hour
		// and its compute resource provider fewer for scale sets (the
		// ScaleSet30Min and VMScaleSetVMViews budgets): a read every 30 s
		// while nothing changes, every 10 s while an instance boots.
		List: autoscale.ListPolicy{Every: 30 * time.Second, Changing: 10 * time.Second, MinGap: 3 * time.Second},
	}
}
