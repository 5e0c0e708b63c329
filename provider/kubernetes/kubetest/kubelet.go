package kubetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dspool/dspool/provider/kubernetes"
)

// Kubelet stands in for the scheduler and the kubelet of one node: it
// binds each new pod of Namespace to its node, or, where the pod's node
// selector or GPUs do not fit the node, marks it unschedulable with the
// scheduler's words; it marks bound pods Running and, with Run, runs each
// one's container command as a process of this machine; it stops the
// process when the pod is deleted, and marks the pod ended when the
// process ends by itself.
type Kubelet struct {
	Client    *kubernetes.Client
	Namespace string
	// Node is the node's name; Labels and GPUs what it has.
	Node   string
	Labels map[string]string
	GPUs   int
	// Run: run the pods' commands; Dir is where their emptyDir volumes
	// and logs go (Dir/POD/...); Env the processes' environment, to which
	// the containers' own variables are added (Secrets read as a kubelet
	// reads them).
	Run bool
	Dir string
	Env []string
	// Failed is told of what goes wrong.
	Failed func(error)

	mu      sync.Mutex
	pods    map[string]*proc // by UID
	Started map[string]time.Time
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	stop bool
}

func (k *Kubelet) fail(err error) {
	if k.Failed != nil && err != nil {
		k.Failed(err)
	}
}

// StartedAt returns when pod name was marked Running (zero: not yet).
func (k *Kubelet) StartedAt(name string) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.Started[name]
}

// StartedTimes returns when each pod was marked Running.
func (k *Kubelet) StartedTimes() []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]time.Time, 0, len(k.Started))
	for _, at := range k.Started {
		out = append(out, at)
	}
	return out
}

// Serve does the node's work until ctx ends, then stops every process it
// started.
func (k *Kubelet) Serve(ctx context.Context) {
	k.mu.Lock()
	k.pods = map[string]*proc{}
	k.Started = map[string]time.Time{}
	k.mu.Unlock()
	if k.Node == "" {
		k.Node = "kubetest-node"
	}
	path := "/api/v1/namespaces/" + k.Namespace + "/pods"
	for ctx.Err() == nil {
		var list corev1.PodList
		if err := k.Client.List(ctx, path, "", &list); err != nil {
			if ctx.Err() == nil {
				k.fail(err)
				time.Sleep(time.Second)
			}
			continue
		}
		for i := range list.Items {
			k.sync(ctx, &list.Items[i], false)
		}
		err := k.Client.Watch(ctx, path, "", list.ResourceVersion, time.Hour, func(ev kubernetes.WatchEvent) error {
			var pod corev1.Pod
			if err := json.Unmarshal(ev.Object, &pod); err != nil {
				return err
			}
			if ev.Type != "BOOKMARK" {
				k.sync(ctx, &pod, ev.Type == "DELETED")
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	k.mu.Lock()
	var all []*proc
	for _, p := range k.pods {
		all = append(all, p)
	}
	k.mu.Unlock()
	for _, p := range all {
		k.kill(p)
	}
}

func (k *Kubelet) kill(p *proc) {
	k.mu.Lock()
	p.stop = true
	k.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func (k *Kubelet) status(ctx context.Context, pod *corev1.Pod, st corev1.PodStatus) error {
	return k.Client.Do(ctx, http.MethodPatch, "/api/v1/namespaces/"+pod.Namespace+"/pods/"+pod.Name+"/status",
		map[string]any{"status": st}, nil)
}

func (k *Kubelet) sync(ctx context.Context, pod *corev1.Pod, deleted bool) {
	uid := string(pod.UID)
	k.mu.Lock()
	p := k.pods[uid]
	k.mu.Unlock()
	switch {
	case deleted || pod.DeletionTimestamp != nil:
		if p != nil && !p.stop {
			k.kill(p)
		}
		if !deleted {
			// The kubelet's last word: the containers are gone.
			zero := int64(0)
			err := k.Client.Do(ctx, http.MethodDelete, "/api/v1/namespaces/"+pod.Namespace+"/pods/"+pod.Name,
				&metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}}, nil)
			if err != nil && !kubernetes.IsNotFound(err) && ctx.Err() == nil {
				k.fail(fmt.Errorf("delete pod %s: %w", pod.Name, err))
			}
		}
		return
	case p != nil || pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "":
		return
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return // told already
		}
	}
	if why := k.fits(pod); why != "" {
		now := metav1.Now()
		err := k.status(ctx, pod, corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/1 nodes are available: " + why + ". preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.", LastTransitionTime: now}}})
		if err != nil && ctx.Err() == nil {
			k.fail(fmt.Errorf("mark pod %s unschedulable: %w", pod.Name, err))
		}
		return
	}
	p = &proc{done: make(chan struct{})}
	k.mu.Lock()
	k.pods[uid] = p
	k.mu.Unlock()
	if pod.Spec.NodeName == "" {
		err := k.Client.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+pod.Namespace+"/pods/"+pod.Name+"/binding", map[string]any{
			"apiVersion": "v1", "kind": "Binding", "metadata": map[string]any{"name": pod.Name},
			"target": map[string]any{"apiVersion": "v1", "kind": "Node", "name": k.Node}}, nil)
		if err != nil {
			close(p.done)
			if ctx.Err() == nil && !kubernetes.IsNotFound(err) {
				k.fail(fmt.Errorf("bind pod %s: %w", pod.Name, err))
			}
			return
		}
	}
	if k.Run {
		if err := k.start(ctx, pod, p); err != nil {
			close(p.done)
			k.fail(err)
			_ = k.status(ctx, pod, corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error()}}}}})
			return
		}
	} else {
		close(p.done)
	}
	now := metav1.Now()
	err := k.status(ctx, pod, corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "127.0.0.1", PodIP: "127.0.0.1", StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", Ready: true, Image: pod.Spec.Containers[0].Image,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}})
	k.mu.Lock()
	k.Started[pod.Name] = now.Time
	k.mu.Unlock()
	if err != nil && ctx.Err() == nil && !kubernetes.IsNotFound(err) {
		k.fail(fmt.Errorf("mark pod %s running: %w", pod.Name, err))
	}
}

// fits says why pod does not fit the node ("": it does), as the
// scheduler's filters say it.
func (k *Kubelet) fits(pod *corev1.Pod) string {
	for key, v := range pod.Spec.NodeSelector {
		if k.Labels[key] != v {
			return "1 node(s) didn't match Pod's node affinity/selector"
		}
	}
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Requests[corev1.ResourceName(kubernetes.GPU)]; ok && q.Value() > int64(k.GPUs) {
			return "1 Insufficient " + string(kubernetes.GPU)
		}
	}
	return ""
}

// start runs the pod's one container as a process: its volumes' mount
// paths in its arguments become their places on this machine.
func (k *Kubelet) start(ctx context.Context, pod *corev1.Pod, p *proc) error {
	c := pod.Spec.Containers[0]
	dir := filepath.Join(k.Dir, pod.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	places := map[string]string{}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.HostPath != nil:
				places[m.MountPath] = v.HostPath.Path
			case v.EmptyDir != nil:
				places[m.MountPath] = filepath.Join(dir, v.Name)
			case v.PersistentVolumeClaim != nil:
				places[m.MountPath] = filepath.Join(k.Dir, "claims", v.PersistentVolumeClaim.ClaimName)
			}
			if err := os.MkdirAll(places[m.MountPath], 0o755); err != nil {
				return err
			}
		}
	}
	args := append(append([]string(nil), c.Command...), c.Args...)
	for i, a := range args {
		for from, to := range places {
			if a == from || strings.HasPrefix(a, from+"/") {
				args[i] = to + strings.TrimPrefix(a, from)
			}
		}
	}
	env := append([]string(nil), k.Env...)
	for _, e := range c.Env {
		v := e.Value
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
			var s corev1.Secret
			if err := k.Client.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+pod.Namespace+"/secrets/"+r.SecretKeyRef.Name, nil, &s); err != nil {
				return fmt.Errorf("pod %s: its Secret %s: %w", pod.Name, r.SecretKeyRef.Name, err)
			}
			v = string(s.Data[r.SecretKeyRef.Key])
		}
		env = append(env, e.Name+"="+v)
	}
	log, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.Dir = env, log, log, dir
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	p.cmd = cmd
	go func() {
		err := cmd.Wait()
		log.Close()
		k.mu.Lock()
		stopped := p.stop
		k.mu.Unlock()
		close(p.done)
		if stopped || ctx.Err() != nil {
			return
		}
		// It ended by itself: the pod ends with it.
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		phase, reason := corev1.PodSucceeded, "Completed"
		if code != 0 {
			phase, reason = corev1.PodFailed, "Error"
		}
		_ = k.status(context.Background(), pod, corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason}}}}})
	}()
	return nil
}
