package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/provider/kubernetes/kubetest"
)

var kubernetesKinds = []string{"POST secrets", "POST pods", "PATCH secrets", "DELETE pods", "DELETE secrets", "GET pods", "WATCH pods"}

// kubernetesEngine starts a real kube-apiserver on etcd (provider/
// kubernetes/kubetest) and puts a recording proxy in front of it, which
// the pool's kubeconfig names: every request dspool makes is counted as
// the API server sees it. A kubelet stand-in binds each pod and runs its
// command, the real agent, as soon as it sees the pod (so the figures
// are dspool's part, above a real node's image pull and container start).
func kubernetesEngine() (*engine, string, error) {
	cluster, why, err := kubetest.Start()
	if cluster == nil {
		return nil, why, err
	}
	const ns = "dspool"
	if err := cluster.Namespace(context.Background(), ns); err != nil {
		cluster.Stop()
		return nil, "", err
	}
	rec, err := cluster.Record()
	if err != nil {
		cluster.Stop()
		return nil, "", err
	}
	k := &kubetest.Kubelet{Client: cluster.Client, Namespace: ns, Run: true, Env: os.Environ(),
		Failed: func(err error) { host.Logf("kubelet: %v", err) }}
	done := make(chan struct{})
	started := false
	return &engine{
		name:  "Kubernetes (a real kube-apiserver " + kubetest.Version + " on etcd; a kubelet stand-in runs each pod's agent)",
		kinds: kubernetesKinds, grow: "POST pods", remove: "DELETE pods",
		settings: func(bin, share, tmp string) (dspool.ProviderSpec, error) {
			if err := os.MkdirAll(share, 0o755); err != nil {
				return dspool.ProviderSpec{}, err
			}
			return dspool.ProviderSpec{Name: "kubernetes", Settings: map[string]json.RawMessage{"kubeconfig": q(rec.Kubeconfig), "namespace": q(ns),
				"image": q("registry.example/dspool:bench"), "command": json.RawMessage(`[` + string(q(bin)) + `,"agent"]`),
				"share": q(share), "share_host_path": q(share)}}, nil
		},
		calls: func() []call {
			var out []call
			for _, c := range rec.Calls() {
				if strings.Contains(c.Path, "/namespaces/"+ns+"/") {
					out = append(out, call{c.At, c.Method + " " + kubeResource(c.Path)})
				}
			}
			return out
		},
		machineStart: func(since time.Time) time.Time {
			var first time.Time
			for _, at := range k.StartedTimes() {
				if at.After(since) && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			return first
		},
		start: func(ctx context.Context, bin, tmp string) {
			started = true
			k.Dir = filepath.Join(tmp, "pods")
			go func() { k.Serve(ctx); close(done) }()
		},
		stop: func() {
			if started {
				<-done
			}
			rec.Close()
			cluster.Stop()
		},
	}, "", nil
}

// kubeResource names what a path is about: "pods", "secrets".
func kubeResource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			return parts[i+2]
		}
	}
	return parts[len(parts)-1]
}
