package kapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dspool/dspool/provider/kubernetes/kapi"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestQuantitiesAsKubernetesReadsThem: the quantities kapi writes are the
// amounts Kubernetes' own parser reads.
func TestQuantitiesAsKubernetesReadsThem(t *testing.T) {
	for _, milli := range []int64{1, 250, 1000, 1500, 2000, 64000} {
		q := kapi.MilliQuantity(milli)
		r := resource.MustParse(string(q))
		if got := r.MilliValue(); got != milli {
			t.Errorf("MilliQuantity(%d) = %s, read as %d", milli, q, got)
		}
	}
	for _, n := range []int64{0, 1, 1000, 1 << 20, 8 << 30, 3<<30 + 1<<20, 1000000000, 5 << 40} {
		for _, q := range []kapi.Quantity{kapi.BinaryQuantity(n), kapi.DecimalQuantity(n)} {
			r := resource.MustParse(string(q))
			if got := r.Value(); got != n {
				t.Errorf("%d written %s, read as %d", n, q, got)
			}
		}
	}
}

// TestPodStatusAsKubernetesWritesIt: a pod's status as k8s.io/api writes
// it reads the same in kapi.
func TestPodStatusAsKubernetesWritesIt(t *testing.T) {
	at := time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC)
	del := metaTime(at)
	in := corev1.Pod{}
	in.Name, in.UID, in.ResourceVersion, in.DeletionTimestamp = "gpu-0a1b2c3d", "u-1", "42", &del
	in.CreationTimestamp = metaTime(at)
	in.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low memory",
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes"}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 127, Reason: "StartError", Message: "no dspool"}}}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out kapi.Pod
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	st := out.Status
	if out.Name != in.Name || out.UID != "u-1" || out.ResourceVersion != "42" || out.DeletionTimestamp == nil ||
		!out.DeletionTimestamp.Equal(at) || !out.CreationTimestamp.Equal(at) ||
		st.Phase != kapi.PodFailed || st.Reason != "Evicted" || st.Message != "low memory" ||
		len(st.Conditions) != 1 || st.Conditions[0].Type != kapi.PodScheduled || st.Conditions[0].Status != kapi.ConditionFalse ||
		st.Conditions[0].Message != "0/3 nodes" || len(st.ContainerStatuses) != 1 || st.ContainerStatuses[0].State.Terminated == nil ||
		st.ContainerStatuses[0].State.Terminated.ExitCode != 127 || st.ContainerStatuses[0].State.Terminated.Reason != "StartError" {
		t.Errorf("read back: %+v\nfrom %s", out, b)
	}
}

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t) }
