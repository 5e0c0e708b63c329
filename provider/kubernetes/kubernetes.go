// Package kubernetes is the provider whose nodes are pods running
// `dspool agent`, for teams whose machines are a Kubernetes cluster. A node
// is one pod (restartPolicy Never) with the pool's node size as its
// requests and limits, GPUs as nvidia.com/gpu, the share from a persistent
// volume claim or a host path, and its join token in a Secret of its own
// that the pod reads as an environment variable: never in the pod's spec.
// Scale-in deletes exactly the pods the autoscaler chose (with their UID
// as a precondition). A pool's pods are listed once and then followed by a
// watch, so the autoscaler's passes cost the API server nothing; a pod the
// scheduler cannot place is a provider error in the scheduler's words.
//
// It talks to the API server through a small REST client over the
// official API types (k8s.io/api), in-cluster or with a kubeconfig; it
// never touches the store.
package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool/provider/kubernetes/kapi"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// engine names Kubernetes in errors and events.
const engine = "kubernetes"

// Labels on every pod and Secret the provider makes.
const (
	LabelPool    = "dspool.io/pool"
	LabelNode    = "dspool.io/node"
	labelManaged = "app.kubernetes.io/managed-by"
	// TokenKey is the Secret's key that holds the join token.
	TokenKey = "token"
	// GPU is the extended resource GPUs are asked for as.
	GPU = kapi.ResourceName("nvidia.com/gpu")
)

// Options configures a Provider.
type Options struct {
	// Share is the default of a pool's share setting.
	Share  string
	Logger *slog.Logger
	// Changed is told of each change the watch sees in a pool.
	Changed func(pool string)
	// Client, when set, is the client of every pool (tests); otherwise one
	// is made for each kubeconfig and context the pools name.
	Client *Client
	// Timeout bounds one call (default 30 s); WatchTimeout is how long one
	// watch request lasts before it is made again (default 5 min).
	Timeout, WatchTimeout time.Duration
}

// Provider runs pools' nodes as pods; it implements autoscale.Provider.
type Provider struct {
	opts Options

	mu      sync.Mutex
	clients map[string]*Client
	watches map[string]*podWatch // by pool

	bg   context.Context
	stop context.CancelFunc
}

var _ autoscale.Provider = (*Provider)(nil)

// New returns a provider.
func New(opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.WatchTimeout == 0 {
		opts.WatchTimeout = 5 * time.Minute
	}
	p := &Provider{opts: opts, clients: map[string]*Client{}, watches: map[string]*podWatch{}}
	p.bg, p.stop = context.WithCancel(context.Background())
	return p
}

// Close ends the watches.
func (p *Provider) Close() { p.stop() }

// Calls returns how many requests the provider sent, by method and
// resource ("POST pods", "WATCH pods"), over all its clients.
func (p *Provider) Calls() map[string]int64 {
	p.mu.Lock()
	cs := make([]*Client, 0, len(p.clients)+1)
	for _, c := range p.clients {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	if p.opts.Client != nil {
		cs = append(cs, p.opts.Client)
	}
	out := map[string]int64{}
	for _, c := range cs {
		for k, v := range c.Calls() {
			out[k] += v
		}
	}
	return out
}

// pool is what a call needs of one pool: its settings, its client, the
// namespace and the watch of its pods.
type pool struct {
	s  *Settings
	c  *Client
	ns string
	w  *podWatch
}

func (p *Provider) pool(ctx context.Context, dp *dspool.Pool) (*pool, error) {
	var s Settings
	if err := autoscale.DecodeSettings(dp, &s); err != nil {
		return nil, fmt.Errorf("kubernetes settings of pool %s: %w", dp.Name, err)
	}
	if s.Share == "" {
		s.Share = p.opts.Share
	}
	c := p.opts.Client
	if c == nil {
		p.mu.Lock()
		key := s.Kubeconfig + "|" + s.Context
		c = p.clients[key]
		if c == nil {
			var err error
			if c, err = NewClient(Config{Kubeconfig: s.Kubeconfig, Context: s.Context}); err != nil {
				p.mu.Unlock()
				return nil, &autoscale.Error{Class: autoscale.ClassOther, Engine: engine, Message: err.Error(), Err: err}
			}
			p.clients[key] = c
		}
		p.mu.Unlock()
	}
	ns := s.Namespace
	if ns == "" {
		ns = c.Namespace()
	}
	if ns == "" {
		ns = "default"
	}
	w, err := p.watch(ctx, c, ns, dp.Name)
	if err != nil {
		return nil, err
	}
	return &pool{s: &s, c: c, ns: ns, w: w}, nil
}

// Grow makes one Secret and one pod per join.
func (p *Provider) Grow(ctx context.Context, req autoscale.GrowRequest) ([]string, error) {
	if req.N() == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	pl, err := p.pool(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, j := range req.Joins {
		name := autoscale.NodeName(req.Pool.Name)
		if err := p.create(ctx, pl, req.Pool, name, j); err != nil {
			return names, err
		}
		names = append(names, name)
	}
	p.opts.Logger.Info("kubernetes: created pods", "pool", req.Pool.Name, "namespace", pl.ns, "nodes", names)
	return names, nil
}

func labels(pool, name string) map[string]string {
	return map[string]string{LabelPool: pool, LabelNode: name, labelManaged: "dspool"}
}

func (p *Provider) create(ctx context.Context, pl *pool, dp *dspool.Pool, name string, j autoscale.Join) error {
	base := "/api/v1/namespaces/" + pl.ns
	secret := &kapi.Secret{TypeMeta: kapi.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: kapi.ObjectMeta{Name: name, Namespace: pl.ns, Labels: labels(dp.Name, name)},
		Type:       kapi.SecretTypeOpaque, Data: map[string][]byte{TokenKey: []byte(j.Token)}}
	if err := pl.c.Do(ctx, http.MethodPost, base+"/secrets", secret, nil); err != nil {
		return classify(err, pl.ns)
	}
	var made kapi.Pod
	if err := pl.c.Do(ctx, http.MethodPost, base+"/pods", Pod(dp, pl.s, pl.ns, name, j.Server), &made); err != nil {
		if derr := pl.c.Do(ctx, http.MethodDelete, base+"/secrets/"+name, nil, nil); derr != nil && !IsNotFound(derr) {
			p.opts.Logger.Warn("kubernetes: delete the Secret of a pod that was refused", "pool", dp.Name, "secret", name, "err", derr)
		}
		return classify(err, pl.ns)
	}
	pl.w.add(&made)
	// The pod owns its Secret: Kubernetes' garbage collector deletes the
	// Secret with the pod, whoever deletes it.
	patch := map[string]any{"metadata": map[string]any{"ownerReferences": []kapi.OwnerReference{{
		APIVersion: "v1", Kind: "Pod", Name: name, UID: made.UID}}}}
	if err := pl.c.Do(ctx, http.MethodPatch, base+"/secrets/"+name, patch, nil); err != nil {
		p.opts.Logger.Warn("kubernetes: make a pod the owner of its Secret", "pool", dp.Name, "pod", name, "err", err)
	}
	return nil
}

// Pod is the pod of node name of pool dp: the agent, with the join token
// from the Secret of the same name.
func Pod(dp *dspool.Pool, s *Settings, ns, name, server string) *kapi.Pod {
	res := kapi.ResourceList{
		kapi.ResourceCPU:    kapi.MilliQuantity(int64(dp.Node.CPUs)),
		kapi.ResourceMemory: kapi.BinaryQuantity(int64(dp.Node.Memory)),
	}
	if dp.Node.GPUs > 0 {
		res[GPU] = kapi.DecimalQuantity(int64(dp.Node.GPUs))
	}
	share := s.Share
	args := []string{"--server", server, "--name", name, "--pool", dp.Name, "--share", share, "--state", s.State,
		"--cpus", dp.Node.CPUs.String(), "--memory", strconv.FormatInt(int64(dp.Node.Memory), 10), "--gpus", strconv.Itoa(dp.Node.GPUs)}
	c := kapi.Container{
		Name: "agent", Image: s.Image, Command: s.Command, Args: args,
		ImagePullPolicy: kapi.PullPolicy(s.ImagePullPolicy),
		Env: []kapi.EnvVar{{Name: "DSPOOL_JOIN_TOKEN", ValueFrom: &kapi.EnvVarSource{
			SecretKeyRef: &kapi.SecretKeySelector{LocalObjectReference: kapi.LocalObjectReference{Name: name}, Key: TokenKey}}}},
		Resources:    kapi.ResourceRequirements{Requests: res, Limits: res},
		VolumeMounts: []kapi.VolumeMount{{Name: "state", MountPath: s.State}},
	}
	if s.Privileged {
		c.SecurityContext = &kapi.SecurityContext{Privileged: &s.Privileged}
	}
	vols := []kapi.Volume{{Name: "state", VolumeSource: kapi.VolumeSource{EmptyDir: &kapi.EmptyDirVolumeSource{}}}}
	switch {
	case s.ShareClaim != "":
		vols = append(vols, kapi.Volume{Name: "share", VolumeSource: kapi.VolumeSource{
			PersistentVolumeClaim: &kapi.PersistentVolumeClaimVolumeSource{ClaimName: s.ShareClaim}}})
	case s.ShareHostPath != "":
		dir := kapi.HostPathDirectory
		vols = append(vols, kapi.Volume{Name: "share", VolumeSource: kapi.VolumeSource{
			HostPath: &kapi.HostPathVolumeSource{Path: s.ShareHostPath, Type: &dir}}})
	}
	if len(vols) > 1 {
		c.VolumeMounts = append(c.VolumeMounts, kapi.VolumeMount{Name: "share", MountPath: share})
	}
	no := false
	grace := int64(30)
	pod := &kapi.Pod{TypeMeta: kapi.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: kapi.ObjectMeta{Name: name, Namespace: ns, Labels: labels(dp.Name, name)},
		Spec: kapi.PodSpec{
			Containers: []kapi.Container{c}, Volumes: vols, RestartPolicy: kapi.RestartPolicyNever,
			NodeSelector: s.NodeSelector, Tolerations: s.Tolerations, PriorityClassName: s.PriorityClass,
			ServiceAccountName: s.ServiceAccount, AutomountServiceAccountToken: &no,
			TerminationGracePeriodSeconds: &grace, EnableServiceLinks: &no,
		}}
	for _, ps := range s.PullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, kapi.LocalObjectReference{Name: ps})
	}
	return pod
}

// Remove deletes the named pods of the pool, each with its UID as a
// precondition (never a pod of the same name made since), and their
// Secrets.
func (p *Provider) Remove(ctx context.Context, dp *dspool.Pool, names []string) error {
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	pl, err := p.pool(ctx, dp)
	if err != nil {
		return err
	}
	for _, name := range names {
		pod := pl.w.get(name)
		if pod == nil || pod.DeletionTimestamp != nil {
			continue
		}
		if err := p.delete(ctx, pl.c, pl.ns, pod); err != nil {
			return err
		}
		pl.w.removed(pod)
	}
	p.opts.Logger.Info("kubernetes: deleted pods", "pool", dp.Name, "namespace", pl.ns, "nodes", names)
	return nil
}

func (p *Provider) delete(ctx context.Context, c *Client, ns string, pod *kapi.Pod) error {
	base := "/api/v1/namespaces/" + ns
	uid := pod.UID
	opts := &kapi.DeleteOptions{TypeMeta: kapi.TypeMeta{APIVersion: "v1", Kind: "DeleteOptions"},
		Preconditions: &kapi.Preconditions{UID: &uid}}
	err := c.Do(ctx, http.MethodDelete, base+"/pods/"+pod.Name, opts, nil)
	var ae *APIError
	if err != nil && !IsNotFound(err) && !(errors.As(err, &ae) && ae.Code == http.StatusConflict) {
		return classify(err, ns)
	}
	if err := c.Do(ctx, http.MethodDelete, base+"/secrets/"+pod.Name, nil, nil); err != nil && !IsNotFound(err) {
		p.opts.Logger.Warn("kubernetes: delete a pod's Secret", "pod", pod.Name, "err", err)
	}
	return nil
}

// List answers from the pool's watch: no call to the API server.
func (p *Provider) List(ctx context.Context, dp *dspool.Pool) ([]autoscale.Instance, error) {
	pl, err := p.pool(ctx, dp)
	if err != nil {
		return nil, err
	}
	pods, err := pl.w.list()
	var out []autoscale.Instance
	var ended []*kapi.Pod
	for _, pod := range pods {
		in, gone := instance(pod)
		if in.State == autoscale.InstanceFailed || gone && pod.DeletionTimestamp == nil {
			// An ended pod holds its Secret and a place in the namespace;
			// it is deleted once told.
			if pl.w.ending(pod) {
				ended = append(ended, pod)
			}
		}
		if !gone {
			out = append(out, in)
		}
	}
	if len(ended) > 0 {
		go func() {
			ctx, cancel := context.WithTimeout(p.bg, p.opts.Timeout)
			defer cancel()
			for _, pod := range ended {
				if err := p.delete(ctx, pl.c, pl.ns, pod); err != nil && p.bg.Err() == nil {
					p.opts.Logger.Warn("kubernetes: delete an ended pod", "pool", dp.Name, "pod", pod.Name, "err", err)
				}
			}
		}()
	}
	return out, err
}

// instance is how the autoscaler sees a pod; gone: not at all (being
// deleted, or ended well).
func instance(pod *kapi.Pod) (in autoscale.Instance, gone bool) {
	in = autoscale.Instance{Name: pod.Name, Created: pod.CreationTimestamp.Time, State: autoscale.InstanceRunning}
	if in.Created.IsZero() {
		in.Created = time.Now()
	}
	st := pod.Status
	switch {
	case pod.DeletionTimestamp != nil, st.Phase == kapi.PodSucceeded:
		return in, true
	case st.Phase == kapi.PodFailed:
		in.State = autoscale.InstanceFailed
		in.Err = ended(pod)
		return in, false
	case st.Phase == kapi.PodRunning:
		return in, false
	case st.Phase == kapi.PodUnknown:
		return in, false
	}
	in.State = autoscale.InstanceCreating
	for _, c := range st.Conditions {
		if c.Type == kapi.PodScheduled && c.Status == kapi.ConditionFalse && c.Reason != "" {
			in.Err = &autoscale.Error{Class: autoscale.ClassUnschedulable, Engine: engine,
				Message: fmt.Sprintf("pod %s is %s: %s", pod.Name, strings.ToLower(c.Reason), c.Message)}
			return in, false
		}
	}
	for _, cs := range st.ContainerStatuses {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "", "ContainerCreating", "PodInitializing":
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
			in.State = autoscale.InstanceFailed
			in.Err = &autoscale.Error{Class: autoscale.ClassImage, Engine: engine,
				Message: fmt.Sprintf("pod %s: %s: %s", pod.Name, w.Reason, w.Message)}
		default:
			in.Err = &autoscale.Error{Class: autoscale.ClassOther, Engine: engine,
				Message: fmt.Sprintf("pod %s: %s: %s", pod.Name, w.Reason, w.Message)}
		}
	}
	return in, false
}

// ended says why a failed pod failed, in Kubernetes' words.
func ended(pod *kapi.Pod) *autoscale.Error {
	e := &autoscale.Error{Class: autoscale.ClassOther, Engine: engine}
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			e.Message = fmt.Sprintf("pod %s: its agent exited %d (%s)", pod.Name, t.ExitCode, t.Reason)
			if t.Message != "" {
				e.Message += ": " + strings.TrimSpace(t.Message)
			}
			switch {
			case t.ExitCode == 126 || t.ExitCode == 127 || t.Reason == "StartError" || t.Reason == "ContainerCannotRun":
				e.Class = autoscale.ClassImage
			case t.Reason == "OOMKilled":
				e.Class = autoscale.ClassCapacity
			}
			return e
		}
	}
	e.Message = fmt.Sprintf("pod %s failed: %s: %s", pod.Name, pod.Status.Reason, pod.Status.Message)
	if pod.Status.Reason == "Evicted" || pod.Status.Reason == "Preempted" {
		e.Class = autoscale.ClassCapacity
	}
	return e
}

// classify turns what the API server answered into an *autoscale.Error in
// its own words.
func classify(err error, ns string) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		var e *autoscale.Error
		if errors.As(err, &e) {
			return err
		}
		return &autoscale.Error{Class: autoscale.ClassOther, Engine: engine, Message: err.Error(), Err: err}
	}
	e := &autoscale.Error{Class: autoscale.ClassOther, Engine: engine, Message: ae.Message, Err: err}
	switch {
	case ae.Code == http.StatusForbidden && strings.Contains(ae.Message, "exceeded quota"):
		e.Class = autoscale.ClassQuota
	case ae.Code == http.StatusForbidden || ae.Code == http.StatusUnauthorized:
		e.Message += " (the control plane's account needs the Role of docs/decisions/0036-kubernetes-provider.md in namespace " + ns + ")"
	case ae.Code == http.StatusNotFound, ae.Code == http.StatusUnprocessableEntity:
		e.Class = autoscale.ClassUnschedulable
	case ae.Code == http.StatusTooManyRequests:
		e.Class = autoscale.ClassCapacity
	}
	return e
}

// decodePod reads a pod of a watch event.
func decodePod(raw json.RawMessage) (*kapi.Pod, error) {
	var pod kapi.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, err
	}
	return &pod, nil
}
