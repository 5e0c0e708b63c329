package e2e_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/provider/kubernetes"
	"github.com/dspool/dspool/provider/kubernetes/kubetest"
)

// TestKubernetesPool runs a pool whose nodes are pods, on a real
// kube-apiserver and etcd of this machine, with the test standing in for
// the scheduler and the kubelet: it binds each pod to its one node and
// runs the pod's command, a real `dspool agent`, as a process, with the
// token of the pod's Secret and the share as its host path. A job
// submitted to the empty pool runs; the idle pod is deleted after the
// idle timeout; a pod the scheduler cannot place shows its words in the
// waiting job's reason and the pool's events.
func TestKubernetesPool(t *testing.T) {
	requireRoot(t)
	cluster, why, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	if cluster == nil {
		kubetest.Skip(t, why)
	}
	t.Cleanup(cluster.Stop)
	ctx := context.Background()
	const ns = "dspool"
	if err := cluster.Namespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(300)})
	block := `provider: {name: kubernetes, kubeconfig: ` + cluster.Kubeconfig + `, namespace: ` + ns + `, image: registry.example/dspool:e2e, command: [` + bin + `, agent], share: ` + up.Share + `, share_host_path: ` + up.Share
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: kube
  `+block+`}
  node: {cpus: 1, memory: 512MiB}
  work: [batch]
  autoscale: {min: 0, max: 2, idle_timeout: 3s}
- name: kubegpu
  `+block+`, node_selector: {accelerator: a100}}
  node: {cpus: 1, memory: 512MiB}
  work: [batch]
  autoscale: {min: 0, max: 1, idle_timeout: 3s}
`))

	// The kubelet stand-in, for one node labelled kind=cpu.
	dir := tempDir(t)
	var mu sync.Mutex
	var failures []error
	k := &kubetest.Kubelet{Client: cluster.Client, Namespace: ns, Labels: map[string]string{"kind": "cpu"}, Run: true, Dir: dir, Env: baseEnv(),
		Failed: func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() }}
	kctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { k.Serve(kctx); close(served) }()
	t.Cleanup(func() {
		stop()
		<-served
		states, _ := filepath.Glob(filepath.Join(dir, "*", "state"))
		removeNodeCgroups(states...)
		mu.Lock()
		defer mu.Unlock()
		for _, err := range failures {
			t.Errorf("the kubelet stand-in: %v", err)
		}
	})
	pods := func(pool string) []corev1.Pod {
		var list corev1.PodList
		if err := cluster.Client.List(ctx, "/api/v1/namespaces/"+ns+"/pods", kubernetes.LabelPool+"="+pool, &list); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}

	var name string
	t.Run("a job wakes the empty pool through a pod and runs", func(t *testing.T) {
		id := submit(t, up.env(), "--pool", "kube", "--", "true")
		j := waitState(t, up.env(), id, dspool.JobSucceeded, 60*time.Second)
		for _, n := range up.poolNodes(t, "kube") {
			if n.ID == j.Node {
				name = n.Name
			}
		}
		started := k.StartedAt(name)
		if started.IsZero() {
			t.Fatalf("the job ran on node %q, which is no pod the kubelet started", name)
		}
		t.Logf("job submitted to an empty Kubernetes pool -> running in %s; pod running -> job running %s",
			j.StartedAt.Sub(j.SubmittedAt).Round(time.Millisecond), j.StartedAt.Sub(started).Round(time.Millisecond))
		ps := pods("kube")
		if len(ps) != 1 || ps[0].Name != name {
			t.Fatalf("pods of pool kube: %d, want the one of node %s", len(ps), name)
		}
		if evs := up.events(t, "kube"); !hasEvent(evs, dspool.EventScaleOut, "added 1 node") {
			t.Fatalf("no scale_out event: %+v", evs)
		}
	})

	t.Run("the join token is in a Secret, not in the pod nor on a command line", func(t *testing.T) {
		if name == "" {
			t.Skip("no pod")
		}
		var raw []byte
		if err := cluster.Client.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods/"+name, nil, &raw); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "dspj_") {
			t.Fatalf("the pod has a join token: %s", raw)
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err == nil && strings.Contains(string(b), "--name\x00kube-") && strings.Contains(string(b), "dspj_") {
				t.Fatalf("an agent has a join token on its command line: %q", b)
			}
		}
	})

	t.Run("the idle pod is deleted after the idle timeout", func(t *testing.T) {
		eventually(t, 60*time.Second, "pool kube back to zero nodes", func() bool { return len(up.poolNodes(t, "kube")) == 0 })
		eventually(t, 30*time.Second, "its pod to be deleted", func() bool { return len(pods("kube")) == 0 })
		if name != "" {
			var s corev1.Secret
			if err := cluster.Client.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+ns+"/secrets/"+name, nil, &s); !kubernetes.IsNotFound(err) {
				t.Errorf("the pod's Secret: %v, want it deleted", err)
			}
		}
		if evs := up.events(t, "kube"); !hasEvent(evs, dspool.EventRemove, "removed node kube-") {
			t.Fatalf("no node_removed event: %+v", evs)
		}
	})

	t.Run("the scheduler's reason is the waiting job's", func(t *testing.T) {
		id := submit(t, up.env(), "--pool", "kubegpu", "--", "true")
		eventually(t, 30*time.Second, "the job to wait with the scheduler's reason", func() bool {
			w := job(t, up.env(), id).Waiting
			return strings.Contains(w, "kubernetes (unschedulable)") && strings.Contains(w, "didn't match Pod's node affinity/selector")
		})
		t.Logf("waiting: %s", job(t, up.env(), id).Waiting)
		if evs := up.events(t, "kubegpu"); !hasEvent(evs, dspool.EventProviderError, "kubernetes (unschedulable)", "node affinity/selector") {
			t.Fatalf("no provider_error event with the scheduler's reason: %+v", evs)
		}
		cliOK(t, up.env(), "job", "cancel", itoa(id))
	})
}
