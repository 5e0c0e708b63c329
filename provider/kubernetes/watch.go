package kubernetes

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/dspool/dspool/provider/kubernetes/kapi"

	"github.com/dspool/dspool/autoscale"
)

// podWatch is one pool's pods as the API server last told: listed once,
// then followed by a watch (listed again when the watch's resource
// version has expired), as client-go's reflector does.
type podWatch struct {
	p        *Provider
	c        *Client
	ns, pool string
	path     string
	selector string

	mu      sync.Mutex
	pods    map[string]*kapi.Pod
	gone    map[kapi.UID]bool // deleted by Remove; events still in flight do not bring them back
	deleted map[kapi.UID]bool // ended pods being deleted
	rv      string
	down    time.Time // since when the watch fails (zero: it works)
	err     error
}

// watch returns the watch of a pool's pods, listing them first if it is
// new.
func (p *Provider) watch(ctx context.Context, c *Client, ns, pool string) (*podWatch, error) {
	key := pool
	p.mu.Lock()
	w := p.watches[key]
	p.mu.Unlock()
	if w != nil && w.c == c && w.ns == ns {
		return w, nil
	}
	w = &podWatch{p: p, c: c, ns: ns, pool: pool, path: "/api/v1/namespaces/" + ns + "/pods", selector: LabelPool + "=" + pool,
		pods: map[string]*kapi.Pod{}, gone: map[kapi.UID]bool{}, deleted: map[kapi.UID]bool{}}
	if err := w.relist(ctx); err != nil {
		return nil, classify(err, ns)
	}
	p.mu.Lock()
	if old := p.watches[key]; old != nil && old.c == c && old.ns == ns {
		p.mu.Unlock()
		return old, nil // another call made it first
	}
	p.watches[key] = w
	p.mu.Unlock()
	go w.run()
	return w, nil
}

func (w *podWatch) relist(ctx context.Context) error {
	var list kapi.PodList
	if err := w.c.List(ctx, w.path, w.selector, &list); err != nil {
		return err
	}
	w.mu.Lock()
	w.pods = map[string]*kapi.Pod{}
	listed := map[kapi.UID]bool{}
	for i := range list.Items {
		pod := &list.Items[i]
		listed[pod.UID] = true
		if !w.gone[pod.UID] {
			w.pods[pod.Name] = pod
		}
	}
	// What is no longer listed is gone: its DELETED event may have been
	// missed while the watch was down.
	for _, m := range []map[kapi.UID]bool{w.gone, w.deleted} {
		for uid := range m {
			if !listed[uid] {
				delete(m, uid)
			}
		}
	}
	w.rv = list.ResourceVersion
	w.mu.Unlock()
	return nil
}

// run follows the pool's pods until the provider closes.
func (w *podWatch) run() {
	ctx := w.p.bg
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		w.mu.Lock()
		rv := w.rv
		w.mu.Unlock()
		start := time.Now()
		err := w.c.Watch(ctx, w.path, w.selector, rv, w.p.opts.WatchTimeout, w.apply)
		if ctx.Err() != nil {
			return
		}
		var ae *APIError
		if errors.As(err, &ae) && (ae.Code == http.StatusGone || ae.Reason == "Expired") {
			// The resource version is too old: list again.
			err = w.relist(ctx)
			if err == nil {
				w.changed()
			}
		}
		w.mu.Lock()
		if err == nil {
			w.down, w.err = time.Time{}, nil
		} else if w.down.IsZero() {
			w.down, w.err = time.Now(), err
		} else {
			w.err = err
		}
		w.mu.Unlock()
		if err == nil && time.Since(start) > time.Second {
			wait = 100 * time.Millisecond
			continue
		}
		if err != nil {
			w.p.opts.Logger.Warn("kubernetes: the watch of a pool's pods failed", "pool", w.pool, "namespace", w.ns, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (w *podWatch) changed() {
	if w.p.opts.Changed != nil {
		w.p.opts.Changed(w.pool)
	}
}

// apply applies one event of the watch.
func (w *podWatch) apply(ev WatchEvent) error {
	pod, err := decodePod(ev.Object)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if pod.ResourceVersion != "" {
		w.rv = pod.ResourceVersion
	}
	switch ev.Type {
	case "ADDED", "MODIFIED":
		if !w.gone[pod.UID] {
			w.pods[pod.Name] = pod
		}
	case "DELETED":
		if old := w.pods[pod.Name]; old != nil && old.UID == pod.UID {
			delete(w.pods, pod.Name)
		}
		delete(w.gone, pod.UID)
		delete(w.deleted, pod.UID)
	case "BOOKMARK":
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	w.changed()
	return nil
}

// add records a pod the provider made (its watch event may come later).
func (w *podWatch) add(pod *kapi.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.pods[pod.Name]; old == nil || old.UID != pod.UID {
		w.pods[pod.Name] = pod
	}
}

// get returns the pod called name of the pool, or nil.
func (w *podWatch) get(name string) *kapi.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pods[name]
}

// removed forgets a pod that Remove deleted.
func (w *podWatch) removed(pod *kapi.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gone[pod.UID] = true
	delete(w.pods, pod.Name)
}

// ending reports whether an ended pod is yet to be deleted, and marks it
// as being deleted.
func (w *podWatch) ending(pod *kapi.Pod) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deleted[pod.UID] {
		return false
	}
	w.deleted[pod.UID] = true
	return true
}

// list returns the pool's pods by name; an error once the watch has
// failed for more than a minute (with the pods as last seen).
func (w *podWatch) list() ([]*kapi.Pod, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*kapi.Pod, 0, len(w.pods))
	for _, pod := range w.pods {
		out = append(out, pod)
	}
	slices.SortFunc(out, func(a, b *kapi.Pod) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	if !w.down.IsZero() && time.Since(w.down) > time.Minute {
		return out, &autoscale.Error{Class: autoscale.ClassOther, Engine: engine,
			Message: "the watch of pool " + w.pool + "'s pods has failed since " + w.down.Format(time.RFC3339) + ": " + w.err.Error(), Err: w.err}
	}
	return out, nil
}
