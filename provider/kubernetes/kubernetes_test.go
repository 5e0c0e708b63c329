package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/autoscale/providertest"
	"github.com/dspool/dspool/provider/kubernetes"
	"github.com/dspool/dspool/provider/kubernetes/kubetest"
)

var (
	cluster *kubetest.Cluster
	why     string
)

// The namespaces of the tests: pods are placed in "pods" (by a kubelet
// stand-in whose node has kind=cpu), "full" allows none.
const (
	nsPods = "pods"
	nsFull = "full"
)

func TestMain(m *testing.M) {
	var err error
	cluster, why, err = kubetest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 0
	var stop context.CancelFunc = func() {}
	done := make(chan struct{})
	if cluster != nil {
		ctx := context.Background()
		for _, ns := range []string{nsPods, nsFull} {
			if err := cluster.Namespace(ctx, ns); err != nil {
				fmt.Fprintln(os.Stderr, "namespace:", err)
				cluster.Stop()
				os.Exit(1)
			}
		}
		if err := cluster.Quota(ctx, nsFull); err != nil {
			fmt.Fprintln(os.Stderr, "quota:", err)
			cluster.Stop()
			os.Exit(1)
		}
		var kctx context.Context
		kctx, stop = context.WithCancel(ctx)
		k := &kubetest.Kubelet{Client: cluster.Client, Namespace: nsPods, Labels: map[string]string{"kind": "cpu"},
			Failed: func(err error) { fmt.Fprintln(os.Stderr, "kubelet:", err) }}
		go func() { k.Serve(kctx); close(done) }()
	} else {
		close(done)
	}
	code = m.Run()
	stop()
	<-done
	if cluster != nil {
		cluster.Stop()
	}
	os.Exit(code)
}

func need(t *testing.T) {
	t.Helper()
	if cluster == nil {
		kubetest.Skip(t, why)
	}
}

var pools atomic.Int64

func settings(t *testing.T, s map[string]any) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range s {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	return out
}

func newPool(t *testing.T, s map[string]any, node dspool.NodeSize) *dspool.Pool {
	t.Helper()
	reg, err := autoscale.NewRegistry(kubernetes.Kind(kubernetes.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if s["image"] == nil {
		s["image"] = "registry.example/dspool:test"
	}
	p := &dspool.Pool{Name: fmt.Sprintf("k%d", pools.Add(1)), Provider: dspool.ProviderSpec{Name: kubernetes.Name, Settings: settings(t, s)}, Node: node}
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check("", p); err != nil {
		t.Fatal(err)
	}
	return p
}

var small = dspool.NodeSize{CPUs: 500, Memory: 256 << 20}

func newProvider(t *testing.T, changed func(string)) *kubernetes.Provider {
	prov := kubernetes.New(kubernetes.Options{Client: cluster.Client, Share: "/srv/share", Changed: changed, Timeout: 20 * time.Second})
	t.Cleanup(prov.Close)
	return prov
}

func getPod(t *testing.T, ns, name string) (*corev1.Pod, error) {
	var pod corev1.Pod
	err := cluster.Client.Do(context.Background(), http.MethodGet, "/api/v1/namespaces/"+ns+"/pods/"+name, nil, &pod)
	return &pod, err
}

func getSecret(t *testing.T, ns, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := cluster.Client.Do(context.Background(), http.MethodGet, "/api/v1/namespaces/"+ns+"/secrets/"+name, nil, &s)
	return &s, err
}

func TestConformance(t *testing.T) {
	need(t)
	kind := kubernetes.Kind(kubernetes.Options{})
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		prov := newProvider(t, nil)
		base := func() map[string]any { return map[string]any{"namespace": nsPods} }
		h := &providertest.Harness{Provider: prov, Pool: newPool(t, base(), small), Other: newPool(t, base(), small), List: kind.List}
		h.Refused = newPool(t, map[string]any{"namespace": nsFull}, small)
		h.RefusedClass = autoscale.ClassQuota
		h.Queued = newPool(t, map[string]any{"namespace": nsPods, "node_selector": map[string]string{"kind": "gpu"}}, small)
		h.Started = func(t *testing.T, name string) ([]string, string) {
			pod, err := getPod(t, nsPods, name)
			if err != nil {
				t.Fatalf("pod %s: %v", name, err)
			}
			c := pod.Spec.Containers[0]
			ref := c.Env[0].ValueFrom.SecretKeyRef
			s, err := getSecret(t, nsPods, ref.Name)
			if err != nil {
				t.Fatalf("the Secret of pod %s: %v", name, err)
			}
			return append(slices.Clone(c.Command), c.Args...), string(s.Data[ref.Key])
		}
		t.Cleanup(func() {
			ctx := context.Background()
			for _, p := range []*dspool.Pool{h.Pool, h.Other, h.Queued} {
				insts, _ := prov.List(ctx, p)
				var names []string
				for _, in := range insts {
					names = append(names, in.Name)
				}
				_ = prov.Remove(ctx, p, names)
			}
		})
		return h
	})
}

// TestPodSpec: the pod carries the node size as requests and limits, GPUs
// as nvidia.com/gpu, the placement settings and the share, and reads its
// token from its Secret: the token is nowhere in the pod.
func TestPodSpec(t *testing.T) {
	s := map[string]any{"namespace": "ml", "image": "registry.example/dspool:1", "command": []string{"/usr/local/bin/dspool", "agent"},
		"node_selector": map[string]string{"accelerator": "a100"}, "share_claim": "dspool-share", "share": "/mnt/dspool",
		"tolerations":    []map[string]any{{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}},
		"priority_class": "batch", "image_pull_secrets": []string{"regcred"}}
	pool := newPool(t, s, dspool.NodeSize{CPUs: 1500, Memory: 8 << 30, GPUs: 2})
	var set kubernetes.Settings
	if err := autoscale.DecodeSettings(pool, &set); err != nil {
		t.Fatal(err)
	}
	// The pod as Kubernetes' own types read it.
	b, _ := json.Marshal(kubernetes.Pod(pool, &set, "ml", pool.Name+"-0a1b2c3d", "https://10.0.0.1:8080"))
	if strings.Contains(string(b), "dspj_") {
		t.Fatalf("the pod has a join token: %s", b)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(b, &pod); err != nil {
		t.Fatalf("the pod's JSON, as k8s.io/api reads it: %v: %s", err, b)
	}
	c := pod.Spec.Containers[0]
	for _, r := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		cpu, mem, gpu := r[corev1.ResourceCPU], r[corev1.ResourceMemory], r[corev1.ResourceName(kubernetes.GPU)]
		if cpu.String() != "1500m" || mem.String() != "8Gi" || gpu.String() != "2" {
			t.Errorf("resources cpu %s memory %s gpu %s, want 1500m 8Gi 2", cpu.String(), mem.String(), gpu.String())
		}
	}
	if e := c.Env; len(e) != 1 || e[0].Name != "DSPOOL_JOIN_TOKEN" || e[0].Value != "" || e[0].ValueFrom == nil ||
		e[0].ValueFrom.SecretKeyRef.Name != pod.Name || e[0].ValueFrom.SecretKeyRef.Key != kubernetes.TokenKey {
		t.Errorf("env %+v: want DSPOOL_JOIN_TOKEN from the pod's Secret", e)
	}
	args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	for _, want := range []string{"/usr/local/bin/dspool agent --server https://10.0.0.1:8080 --name " + pod.Name, "--pool " + pool.Name,
		"--share /mnt/dspool", "--cpus 1.5", "--memory 8589934592", "--gpus 2"} {
		if !strings.Contains(args, want) {
			t.Errorf("command %q lacks %q", args, want)
		}
	}
	sp := pod.Spec
	if sp.NodeSelector["accelerator"] != "a100" || len(sp.Tolerations) != 1 || sp.Tolerations[0].Key != "nvidia.com/gpu" ||
		sp.PriorityClassName != "batch" || len(sp.ImagePullSecrets) != 1 || sp.RestartPolicy != corev1.RestartPolicyNever ||
		sp.AutomountServiceAccountToken == nil || *sp.AutomountServiceAccountToken {
		t.Errorf("pod spec %+v", sp)
	}
	var claim string
	for _, v := range sp.Volumes {
		if v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "share" && m.MountPath == "/mnt/dspool" })
	if claim != "dspool-share" || !mounted {
		t.Errorf("share: claim %q mounted %v; volumes %+v mounts %+v", claim, mounted, sp.Volumes, c.VolumeMounts)
	}
	host := newPool(t, map[string]any{"share_host_path": "/srv/dspool"}, small)
	var hset kubernetes.Settings
	if err := autoscale.DecodeSettings(host, &hset); err != nil {
		t.Fatal(err)
	}
	hp := kubernetes.Pod(host, &hset, "default", host.Name+"-1", "https://x")
	if v := hp.Spec.Volumes[len(hp.Spec.Volumes)-1]; v.HostPath == nil || v.HostPath.Path != "/srv/dspool" {
		t.Errorf("host path share: volumes %+v", hp.Spec.Volumes)
	}
	if _, ok := hp.Spec.Containers[0].Resources.Limits[kubernetes.GPU]; ok {
		t.Errorf("a pool without GPUs asks for %s", kubernetes.GPU)
	}
}

func TestSettings(t *testing.T) {
	reg, err := autoscale.NewRegistry(kubernetes.Kind(kubernetes.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		settings  map[string]any
		wantField string
	}{
		{"image only", map[string]any{"image": "dspool:1"}, ""},
		{"all", map[string]any{"image": "dspool:1", "namespace": "ml", "kubeconfig": "/etc/dspool/kubeconfig", "context": "prod",
			"command": []string{"/bin/dspool", "agent"}, "image_pull_policy": "Always", "image_pull_secrets": []string{"reg"},
			"node_selector":  map[string]string{"node.kubernetes.io/instance-type": "g5.xlarge"},
			"tolerations":    []map[string]any{{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}},
			"priority_class": "high", "service_account": "dspool-agent", "share": "/mnt/d", "share_claim": "share", "state": "/var/lib/d", "privileged": true}, ""},
		{"no image", map[string]any{}, "pools[0].provider.image"},
		{"unknown setting", map[string]any{"image": "d", "zone": "x"}, "pools[0].provider.zone"},
		{"bad namespace", map[string]any{"image": "d", "namespace": "Team_A"}, "pools[0].provider.namespace"},
		{"claim and host path", map[string]any{"image": "d", "share_claim": "a", "share_host_path": "/b"}, "pools[0].provider.share_claim"},
		{"bad toleration operator", map[string]any{"image": "d", "tolerations": []map[string]any{{"key": "a", "operator": "Like"}}}, "pools[0].provider.tolerations[0].operator"},
		{"bad effect", map[string]any{"image": "d", "tolerations": []map[string]any{{"key": "a", "effect": "Never"}}}, "pools[0].provider.tolerations[0].effect"},
		{"bad selector value", map[string]any{"image": "d", "node_selector": map[string]string{"a": "b c"}}, "pools[0].provider.node_selector.a"},
		{"relative kubeconfig", map[string]any{"image": "d", "kubeconfig": "kc"}, "pools[0].provider.kubeconfig"},
		{"bad pull policy", map[string]any{"image": "d", "image_pull_policy": "Sometimes"}, "pools[0].provider.image_pull_policy"},
		{"empty command word", map[string]any{"image": "d", "command": []string{""}}, "pools[0].provider.command[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &dspool.Pool{Name: "kube", Provider: dspool.ProviderSpec{Name: kubernetes.Name, Settings: settings(t, tt.settings)},
				Node: dspool.NodeSize{CPUs: 1500, Memory: 1 << 30}}
			if err := p.Normalize("pools[0]."); err != nil {
				t.Fatal(err)
			}
			err := reg.Check("pools[0].", p)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if string(p.Provider.Settings["state"]) == "" || string(p.Provider.Settings["command"]) == "" {
					t.Errorf("defaults not filled in: %v", p.Provider.Settings)
				}
				return
			}
			e, ok := err.(*dspool.Error)
			if !ok || e.Field != tt.wantField {
				t.Errorf("got %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}

// TestScaleInDeletesTheChosenPod: of three pods, Remove deletes exactly
// the one named, and its Secret, which the pod owns.
func TestScaleInDeletesTheChosenPod(t *testing.T) {
	need(t)
	prov := newProvider(t, nil)
	pool := newPool(t, map[string]any{"namespace": nsPods}, small)
	ctx := context.Background()
	names, err := prov.Grow(ctx, providertest.Request(pool, 3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prov.Remove(ctx, pool, names) })
	s, err := getSecret(t, nsPods, names[1])
	if err != nil {
		t.Fatal(err)
	}
	pod, _ := getPod(t, nsPods, names[1])
	if refs := s.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Pod" || refs[0].UID != pod.UID {
		t.Errorf("the Secret's owners are %+v, want pod %s (%s)", refs, pod.Name, pod.UID)
	}
	if err := prov.Remove(ctx, pool, names[1:2]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := getPod(t, nsPods, names[1])
		if kubernetes.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s is still there: %v", names[1], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := getSecret(t, nsPods, names[1]); !kubernetes.IsNotFound(err) {
		t.Errorf("the removed pod's Secret: %v, want not found", err)
	}
	for _, n := range []string{names[0], names[2]} {
		if _, err := getPod(t, nsPods, n); err != nil {
			t.Errorf("pod %s that was not chosen: %v", n, err)
		}
	}
}

// TestListIsTheWatch: the autoscaler's passes cost the API server
// nothing; what the kubelet changes is told through Changed and shows.
func TestListIsTheWatch(t *testing.T) {
	need(t)
	var changes atomic.Int64
	prov := newProvider(t, func(string) { changes.Add(1) })
	pool := newPool(t, map[string]any{"namespace": nsPods}, small)
	ctx := context.Background()
	names, err := prov.Grow(ctx, providertest.Request(pool, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prov.Remove(ctx, pool, names) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		in, err := prov.List(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if len(in) == 1 && in[0].State == autoscale.InstanceRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod did not list as running: %+v", in)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if changes.Load() == 0 {
		t.Errorf("the watch told no change")
	}
	before := prov.Calls()
	for range 100 {
		if _, err := prov.List(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	after := prov.Calls()
	for k, v := range after {
		if k != "WATCH pods" && v != before[k] {
			t.Errorf("100 lists made %d %s calls", v-before[k], k)
		}
	}
}

// TestFailedPod: a pod whose agent could not start, or whose image cannot
// be pulled, lists as failed, in the kubelet's words and class image, and
// is deleted.
func TestFailedPod(t *testing.T) {
	need(t)
	ctx := context.Background()
	const ns = "nokubelet" // no kubelet stand-in: the test is the kubelet
	if err := cluster.Namespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		status corev1.PodStatus
		words  string
	}{
		{"agent cannot start", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError",
				Message: `exec: "dspool": executable file not found in $PATH`}}}}}, "executable file not found"},
		{"image cannot be pulled", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
				Message: `Back-off pulling image "registry.example/dspool:test"`}}}}}, "ImagePullBackOff: Back-off pulling image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prov := newProvider(t, nil)
			pool := newPool(t, map[string]any{"namespace": ns}, small)
			names, err := prov.Grow(ctx, providertest.Request(pool, 1))
			if err != nil {
				t.Fatal(err)
			}
			err = cluster.Client.Do(ctx, http.MethodPatch, "/api/v1/namespaces/"+ns+"/pods/"+names[0]+"/status", map[string]any{"status": tt.status}, nil)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				in, err := prov.List(ctx, pool)
				if err != nil {
					t.Fatal(err)
				}
				if len(in) == 1 && in[0].State == autoscale.InstanceFailed {
					if e := in[0].Err; e == nil || e.Class != autoscale.ClassImage || !strings.Contains(e.Message, tt.words) {
						t.Fatalf("failed pod's error: %v", e)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the pod did not list as failed: %+v", in)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for {
				if _, err := getPod(t, ns, names[0]); kubernetes.IsNotFound(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the failed pod was not deleted")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestKubeconfigExec: a kubeconfig whose user gets its token from a
// credential plugin, as EKS, GKE and AKS kubeconfigs do.
func TestKubeconfigExec(t *testing.T) {
	need(t)
	dir := t.TempDir()
	plugin := filepath.Join(dir, "get-token")
	body := `#!/bin/sh
case "$KUBERNETES_EXEC_INFO" in *ExecCredential*) ;; *) exit 3;; esac
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"` + cluster.Token + `"}}'
`
	if err := os.WriteFile(plugin, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc := strings.Replace(string(b), `{token: "`+cluster.Token+`"}`, `{exec: {apiVersion: client.authentication.k8s.io/v1, command: `+plugin+`}}`, 1)
	kc = strings.Replace(kc, "certificate-authority: certs/apiserver.crt", "certificate-authority: "+filepath.Join(filepath.Dir(cluster.Kubeconfig), "certs", "apiserver.crt"), 1)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewClient(kubernetes.Config{Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	var list corev1.PodList
	if err := c.List(context.Background(), "/api/v1/namespaces/"+nsPods+"/pods", "", &list); err != nil {
		t.Fatalf("list pods with the plugin's token: %v", err)
	}
	if c.Namespace() != "default" {
		t.Errorf("namespace %q, want the context's", c.Namespace())
	}
}

// TestMinimalRBAC: the Role the guide and decision 0036 give is all the
// provider needs: a user with only it grows, lists, watches and removes.
func TestMinimalRBAC(t *testing.T) {
	need(t)
	ctx := context.Background()
	const ns = "rbac"
	if err := cluster.Namespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	rbac := "/apis/rbac.authorization.k8s.io/v1/namespaces/" + ns
	role := map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": map[string]any{"name": "dspool-pools"},
		"rules": []map[string]any{
			{"apiGroups": []string{""}, "resources": []string{"pods"}, "verbs": []string{"create", "delete", "list", "watch"}},
			{"apiGroups": []string{""}, "resources": []string{"secrets"}, "verbs": []string{"create", "delete", "patch"}}}}
	binding := map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": map[string]any{"name": "dspool-pools"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dspool-pools"},
		"subjects": []map[string]any{{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dspool"}}}
	prov := kubernetes.New(kubernetes.Options{Share: "/srv/share", Timeout: 20 * time.Second})
	t.Cleanup(prov.Close)
	pool := newPool(t, map[string]any{"namespace": ns, "kubeconfig": cluster.UserKubeconfig}, small)
	// Without the Role: refused, in the API server's words, with what to do.
	_, err := prov.Grow(ctx, providertest.Request(pool, 1))
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "0036") {
		t.Fatalf("Grow without the Role: %v, want forbidden, naming the decision with the Role", err)
	}
	if err := cluster.Client.Do(ctx, http.MethodPost, rbac+"/roles", role, nil); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Do(ctx, http.MethodPost, rbac+"/rolebindings", binding, nil); err != nil {
		t.Fatal(err)
	}
	// The API server's authorizer learns of the binding through its own
	// watch: a moment.
	var names []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if names, err = prov.Grow(ctx, providertest.Request(pool, 2)); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Grow with the Role: %v", err)
	}
	in, err := prov.List(ctx, pool)
	if err != nil || len(in) != 2 {
		t.Fatalf("List with the Role: %+v, %v", in, err)
	}
	if err := prov.Remove(ctx, pool, names); err != nil {
		t.Fatalf("Remove with the Role: %v", err)
	}
	in, err = prov.List(ctx, pool)
	if err != nil || len(in) != 0 {
		t.Fatalf("List after Remove: %+v, %v", in, err)
	}
	for _, n := range names {
		if _, err := getSecret(t, ns, n); !kubernetes.IsNotFound(err) {
			t.Errorf("Secret %s after Remove: %v", n, err)
		}
	}
}

// TestInCluster: in a pod (KUBERNETES_SERVICE_HOST set, a service account
// mounted), a pool with no kubeconfig reaches the API server with the
// pod's token and CA, in the pod's namespace.
func TestInCluster(t *testing.T) {
	need(t)
	dir := t.TempDir()
	ca, err := os.ReadFile(filepath.Join(filepath.Dir(cluster.Kubeconfig), "certs", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"token": cluster.Token + "\n", "ca.crt": string(ca), "namespace": nsPods} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	defer kubernetes.SetInCluster(dir)()
	host, port, _ := strings.Cut(strings.TrimPrefix(cluster.URL, "https://"), ":")
	t.Setenv("KUBERNETES_SERVICE_HOST", host)
	t.Setenv("KUBERNETES_SERVICE_PORT", port)
	t.Setenv("KUBECONFIG", "/nonexistent")
	prov := kubernetes.New(kubernetes.Options{Share: "/srv/share", Timeout: 20 * time.Second})
	t.Cleanup(prov.Close)
	pool := newPool(t, map[string]any{}, small) // the namespace is the pod's
	ctx := context.Background()
	names, err := prov.Grow(ctx, providertest.Request(pool, 1))
	if err != nil {
		t.Fatalf("Grow in the cluster: %v", err)
	}
	if _, err := getPod(t, nsPods, names[0]); err != nil {
		t.Fatalf("the pod is not in the pod's namespace %s: %v", nsPods, err)
	}
	if err := prov.Remove(ctx, pool, names); err != nil {
		t.Fatal(err)
	}
}

// TestRestartFindsItsPods: a control plane started again lists the pods
// its predecessor made, and removes them.
func TestRestartFindsItsPods(t *testing.T) {
	need(t)
	ctx := context.Background()
	pool := newPool(t, map[string]any{"namespace": nsPods}, small)
	before := newProvider(t, nil)
	names, err := before.Grow(ctx, providertest.Request(pool, 2))
	if err != nil {
		t.Fatal(err)
	}
	before.Close()
	after := newProvider(t, nil)
	in, err := after.List(ctx, pool)
	if err != nil || len(in) != 2 {
		t.Fatalf("a new provider lists %+v, %v; want the 2 pods %v", in, err, names)
	}
	if err := after.Remove(ctx, pool, names); err != nil {
		t.Fatal(err)
	}
	if in, err := after.List(ctx, pool); err != nil || len(in) != 0 {
		t.Fatalf("after Remove: %+v, %v", in, err)
	}
}
