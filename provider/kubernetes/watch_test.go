package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dspool/dspool/provider/kubernetes"
)

// TestWatchExpired: when the API server says the watch's resource version
// has expired (410), the pool's pods are listed again, and followed from
// the new list's version; no API server needed.
func TestWatchExpired(t *testing.T) {
	pod := func(name, rv string) map[string]any {
		return map[string]any{"metadata": map[string]any{"name": name, "uid": "uid-" + name, "resourceVersion": rv,
			"creationTimestamp": "2026-12-08T00:00:00Z"}, "status": map[string]any{"phase": "Running"}}
	}
	var lists, watches atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		enc := json.NewEncoder(w)
		switch {
		case q.Get("watch") != "1" && lists.Add(1) == 1:
			_ = enc.Encode(map[string]any{"metadata": map[string]any{"resourceVersion": "1"}, "items": []any{pod("k-a", "1")}})
		case q.Get("watch") != "1":
			_ = enc.Encode(map[string]any{"metadata": map[string]any{"resourceVersion": "5"}, "items": []any{pod("k-b", "5")}})
		case q.Get("resourceVersion") == "1":
			watches.Add(1)
			_ = enc.Encode(map[string]any{"type": "ERROR", "object": map[string]any{"kind": "Status", "code": 410, "reason": "Expired",
				"message": "too old resource version: 1 (4)"}})
		case q.Get("resourceVersion") == "5":
			watches.Add(1)
			_ = enc.Encode(map[string]any{"type": "ADDED", "object": pod("k-c", "6")})
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.Error(w, "unexpected resourceVersion "+q.Get("resourceVersion"), http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]
current-context: x
`, srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewClient(kubernetes.Config{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	prov := kubernetes.New(kubernetes.Options{Client: c})
	defer prov.Close()
	pool := newPool(t, map[string]any{}, small)
	pool.Name = "k"
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := prov.List(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range in {
			names = append(names, i.Name)
		}
		slices.Sort(names)
		if slices.Equal(names, []string{"k-b", "k-c"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods %v after the watch expired, want [k-b k-c] (lists %d, watches %d)", names, lists.Load(), watches.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lists.Load() != 2 {
		t.Errorf("%d lists, want 2: the first, and one after the 410", lists.Load())
	}
}
