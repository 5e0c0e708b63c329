package kubernetes

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool/provider/kubernetes/kapi"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// Settings are a Kubernetes pool's provider block:
//
//	provider:
//	  name: kubernetes
//	  namespace: dspool
//	  image: registry.example/dspool:1.4
//	  share_claim: dspool-share
//	  node_selector: {pool: gpu}
//	  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
type Settings struct {
	// Kubeconfig and Context say how the control plane reaches the
	// cluster ("": in-cluster with its pod's service account, else
	// $KUBECONFIG or ~/.kube/config, its current context).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
	// Namespace the pods and their Secrets go in (default: the
	// kubeconfig context's, or the control plane pod's, else default).
	Namespace string `json:"namespace,omitempty"`
	// Image has dspool in it; Command is how the agent is started in it
	// (default [dspool, agent]): the provider adds the node's flags.
	Image           string   `json:"image"`
	Command         []string `json:"command,omitempty"`
	ImagePullPolicy string   `json:"image_pull_policy,omitempty"`
	PullSecrets     []string `json:"image_pull_secrets,omitempty"`
	// NodeSelector and Tolerations place the pods on the cluster's nodes.
	NodeSelector map[string]string `json:"node_selector,omitempty"`
	Tolerations  []kapi.Toleration `json:"tolerations,omitempty"`
	// PriorityClass and ServiceAccount are the pods' (""; the agent
	// needs no access to the Kubernetes API: no token is mounted).
	PriorityClass  string `json:"priority_class,omitempty"`
	ServiceAccount string `json:"service_account,omitempty"`
	// Share is where the pods mount the share (default: where the control
	// plane does), from a persistent volume claim (ShareClaim, ReadWriteMany)
	// or a directory of the Kubernetes node (ShareHostPath); neither: the
	// image has it.
	Share         string `json:"share,omitempty"`
	ShareClaim    string `json:"share_claim,omitempty"`
	ShareHostPath string `json:"share_host_path,omitempty"`
	// State is where the agent keeps its identity, an emptyDir (default
	// /var/lib/dspool/agent).
	State string `json:"state,omitempty"`
	// Privileged runs the agent's container privileged: what it needs to
	// put jobs in cgroups of their own and to make users' accounts on
	// clusters that do not delegate cgroups to containers.
	Privileged bool `json:"privileged,omitempty"`
}

// The patterns are compiled at their first use: every dspool command
// links this package, few check a pool.
var (
	dnsLabelRE = lazyRE(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsNameRE  = lazyRE(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	labelKeyRE = lazyRE(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValRE = lazyRE(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	imageRE    = lazyRE(`^[^\s'"\\]{1,1000}$`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// DefaultState is where agents keep their state in their pods.
const DefaultState = "/var/lib/dspool/agent"

// Check validates the settings of pool p and fills their defaults.
func (s *Settings) Check(prefix string, p *dspool.Pool) error {
	f := func(name string) string { return prefix + "provider." + name }
	switch {
	case s.Image == "":
		return dspool.Invalid(f("image"), "is required: the container image with dspool in it")
	case !imageRE().MatchString(s.Image):
		return dspool.Invalid(f("image"), "%q is not an image reference", s.Image)
	case s.Namespace != "" && !dnsLabelRE().MatchString(s.Namespace):
		return dspool.Invalid(f("namespace"), "%q is not a namespace: a DNS label (lowercase letters, digits and '-')", s.Namespace)
	case s.ShareClaim != "" && s.ShareHostPath != "":
		return dspool.Invalid(f("share_claim"), "give the share as a claim or a host path, not both")
	case s.ShareClaim != "" && !dnsNameRE().MatchString(s.ShareClaim):
		return dspool.Invalid(f("share_claim"), "%q is not a persistent volume claim's name", s.ShareClaim)
	case s.PriorityClass != "" && !dnsNameRE().MatchString(s.PriorityClass):
		return dspool.Invalid(f("priority_class"), "%q is not a priority class's name", s.PriorityClass)
	case s.ServiceAccount != "" && !dnsNameRE().MatchString(s.ServiceAccount):
		return dspool.Invalid(f("service_account"), "%q is not a service account's name", s.ServiceAccount)
	case s.Kubeconfig != "" && !strings.HasPrefix(s.Kubeconfig, "/"):
		return dspool.Invalid(f("kubeconfig"), "%q must be an absolute path", s.Kubeconfig)
	}
	switch s.ImagePullPolicy {
	case "", string(kapi.PullAlways), string(kapi.PullIfNotPresent), string(kapi.PullNever):
	default:
		return dspool.Invalid(f("image_pull_policy"), "%q is not a pull policy: Always, IfNotPresent or Never", s.ImagePullPolicy)
	}
	if len(s.Command) > 32 {
		return dspool.Invalid(f("command"), "has %d words: at most 32", len(s.Command))
	}
	for i, w := range s.Command {
		if w == "" || strings.ContainsAny(w, "\x00\n") {
			return dspool.Invalid(f("command")+"["+itoa(i)+"]", "%q is not a word of a command", w)
		}
	}
	for i, n := range s.PullSecrets {
		if !dnsNameRE().MatchString(n) {
			return dspool.Invalid(f("image_pull_secrets")+"["+itoa(i)+"]", "%q is not a Secret's name", n)
		}
	}
	for k, v := range s.NodeSelector {
		if !labelKeyRE().MatchString(k) || len(k) > 316 {
			return dspool.Invalid(f("node_selector"), "%q is not a label key", k)
		}
		if !labelValRE().MatchString(v) {
			return dspool.Invalid(f("node_selector."+k), "%q is not a label value: at most 63 letters, digits, '-', '_' or '.'", v)
		}
	}
	for i, t := range s.Tolerations {
		field := f("tolerations") + "[" + itoa(i) + "]"
		if t.Key != "" && !labelKeyRE().MatchString(t.Key) {
			return dspool.Invalid(field+".key", "%q is not a taint key", t.Key)
		}
		switch t.Operator {
		case "", kapi.TolerationOpEqual:
		case kapi.TolerationOpExists:
			if t.Value != "" {
				return dspool.Invalid(field+".value", "must be empty with operator Exists")
			}
		default:
			return dspool.Invalid(field+".operator", "%q is not an operator: Equal or Exists", t.Operator)
		}
		if t.Key == "" && t.Operator != kapi.TolerationOpExists {
			return dspool.Invalid(field+".key", "is required unless the operator is Exists")
		}
		switch t.Effect {
		case "", kapi.TaintEffectNoSchedule, kapi.TaintEffectPreferNoSchedule, kapi.TaintEffectNoExecute:
		default:
			return dspool.Invalid(field+".effect", "%q is not an effect: NoSchedule, PreferNoSchedule or NoExecute", t.Effect)
		}
		if !labelValRE().MatchString(t.Value) {
			return dspool.Invalid(field+".value", "%q is not a taint value", t.Value)
		}
	}
	for _, v := range []struct{ name, value string }{{"share", s.Share}, {"share_host_path", s.ShareHostPath}, {"state", s.State}} {
		if v.value != "" && (!strings.HasPrefix(v.value, "/") || strings.ContainsAny(v.value, "\x00\n:")) {
			return dspool.Invalid(f(v.name), "%q must be an absolute path", v.value)
		}
	}
	if s.State == "" {
		s.State = DefaultState
	}
	if len(s.Command) == 0 {
		s.Command = []string{"dspool", "agent"}
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// Name is the provider's kind.
const Name = "kubernetes"

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
			if o.Changed == nil {
				o.Changed = env.Changed
			}
			return New(o), nil
		},
		// The list is the watch's, in memory: reading it costs the API
		// server nothing. The watch tells the cache of every change, which
		// is read again within MinGap.
		List: autoscale.ListPolicy{Every: 30 * time.Second, Changing: 2 * time.Second, MinGap: 200 * time.Millisecond},
	}
}
