// Package kapi is the part of the Kubernetes API that the provider reads
// and writes: pods, secrets, lists, watch statuses and delete options, in
// their JSON form (API version v1). It stands in for k8s.io/api and
// apimachinery, whose packages' initialisation costs every start of the
// dspool binary about 3,200 allocations and a millisecond of CPU
// (docs/decisions/0036-kubernetes-provider.md); fields dspool does not
// use are not here and are dropped on reading. The tests check these
// types against the API server itself.
package kapi

import (
	"encoding/json"
	"strconv"
	"time"
)

// UID is an object's unique id.
type UID string

// Time is a time in the API's form (RFC 3339, seconds).
type Time struct{ time.Time }

// MarshalJSON writes the time as the API does, null when zero.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

// UnmarshalJSON reads RFC 3339, or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	pt, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return err
	}
	t.Time = pt.Local()
	return nil
}

// TypeMeta names an object's kind and API version.
type TypeMeta struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// ObjectMeta is an object's metadata.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               UID               `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	CreationTimestamp Time              `json:"creationTimestamp,omitempty"`
	DeletionTimestamp *Time             `json:"deletionTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty"`
}

// ListMeta is a list's metadata.
type ListMeta struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// OwnerReference names the object that owns another.
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        UID    `json:"uid"`
}

// StatusReason is why a request failed, in one word.
type StatusReason string

// Status is the API's answer to a request that failed, and a watch's
// error event.
type Status struct {
	TypeMeta `json:",inline"`
	Status   string       `json:"status,omitempty"`
	Message  string       `json:"message,omitempty"`
	Reason   StatusReason `json:"reason,omitempty"`
	Code     int32        `json:"code,omitempty"`
}

// Preconditions must hold for a delete to happen.
type Preconditions struct {
	UID *UID `json:"uid,omitempty"`
}

// DeleteOptions are a delete's options.
type DeleteOptions struct {
	TypeMeta      `json:",inline"`
	Preconditions *Preconditions `json:"preconditions,omitempty"`
}

// Secret holds the join token of a pod.
type Secret struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	Type       SecretType        `json:"type,omitempty"`
}

// SecretType is a secret's kind.
type SecretType string

// SecretTypeOpaque is a secret of any data.
const SecretTypeOpaque SecretType = "Opaque"

// Pod is a node of a Kubernetes pool.
type Pod struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata,omitempty"`
	Spec       PodSpec   `json:"spec,omitempty"`
	Status     PodStatus `json:"status,omitempty"`
}

// PodList is a page of pods.
type PodList struct {
	TypeMeta `json:",inline"`
	ListMeta `json:"metadata,omitempty"`
	Items    []Pod `json:"items"`
}

// RestartPolicy says whether a pod's containers start again.
type RestartPolicy string

// RestartPolicyNever: a container that exits stays exited.
const RestartPolicyNever RestartPolicy = "Never"

// PodSpec is what a pod runs, and where.
type PodSpec struct {
	Volumes                       []Volume               `json:"volumes,omitempty"`
	Containers                    []Container            `json:"containers"`
	RestartPolicy                 RestartPolicy          `json:"restartPolicy,omitempty"`
	NodeSelector                  map[string]string      `json:"nodeSelector,omitempty"`
	ServiceAccountName            string                 `json:"serviceAccountName,omitempty"`
	AutomountServiceAccountToken  *bool                  `json:"automountServiceAccountToken,omitempty"`
	NodeName                      string                 `json:"nodeName,omitempty"`
	ImagePullSecrets              []LocalObjectReference `json:"imagePullSecrets,omitempty"`
	Tolerations                   []Toleration           `json:"tolerations,omitempty"`
	PriorityClassName             string                 `json:"priorityClassName,omitempty"`
	TerminationGracePeriodSeconds *int64                 `json:"terminationGracePeriodSeconds,omitempty"`
	EnableServiceLinks            *bool                  `json:"enableServiceLinks,omitempty"`
}

// LocalObjectReference names an object of the same namespace.
type LocalObjectReference struct {
	Name string `json:"name,omitempty"`
}

// Volume is a volume of a pod.
type Volume struct {
	Name         string `json:"name"`
	VolumeSource `json:",inline"`
}

// VolumeSource is where a volume's files are.
type VolumeSource struct {
	HostPath              *HostPathVolumeSource              `json:"hostPath,omitempty"`
	EmptyDir              *EmptyDirVolumeSource              `json:"emptyDir,omitempty"`
	PersistentVolumeClaim *PersistentVolumeClaimVolumeSource `json:"persistentVolumeClaim,omitempty"`
}

// HostPathType is what a host path must be.
type HostPathType string

// HostPathDirectory: a directory that exists.
const HostPathDirectory HostPathType = "Directory"

// HostPathVolumeSource is a directory of the machine.
type HostPathVolumeSource struct {
	Path string        `json:"path"`
	Type *HostPathType `json:"type,omitempty"`
}

// EmptyDirVolumeSource is a directory of the pod's own.
type EmptyDirVolumeSource struct{}

// PersistentVolumeClaimVolumeSource is a claim's volume.
type PersistentVolumeClaimVolumeSource struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// PullPolicy says when an image is pulled.
type PullPolicy string

// The pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullNever        PullPolicy = "Never"
	PullIfNotPresent PullPolicy = "IfNotPresent"
)

// Container is a container of a pod.
type Container struct {
	Name            string               `json:"name"`
	Image           string               `json:"image,omitempty"`
	Command         []string             `json:"command,omitempty"`
	Args            []string             `json:"args,omitempty"`
	Env             []EnvVar             `json:"env,omitempty"`
	Resources       ResourceRequirements `json:"resources,omitempty"`
	VolumeMounts    []VolumeMount        `json:"volumeMounts,omitempty"`
	ImagePullPolicy PullPolicy           `json:"imagePullPolicy,omitempty"`
	SecurityContext *SecurityContext     `json:"securityContext,omitempty"`
}

// EnvVar is a variable of a container's environment.
type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource is where a variable's value comes from.
type EnvVarSource struct {
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// SecretKeySelector is a key of a secret.
type SecretKeySelector struct {
	LocalObjectReference `json:",inline"`
	Key                  string `json:"key"`
}

// VolumeMount is where a volume is in a container.
type VolumeMount struct {
	Name      string `json:"name"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	MountPath string `json:"mountPath"`
}

// SecurityContext is a container's privileges.
type SecurityContext struct {
	Privileged *bool `json:"privileged,omitempty"`
}

// ResourceName names a resource.
type ResourceName string

// The resources a node of a pool asks for.
const (
	ResourceCPU    ResourceName = "cpu"
	ResourceMemory ResourceName = "memory"
)

// ResourceList is an amount of each resource.
type ResourceList map[ResourceName]Quantity

// ResourceRequirements are a container's requests and limits.
type ResourceRequirements struct {
	Limits   ResourceList `json:"limits,omitempty"`
	Requests ResourceList `json:"requests,omitempty"`
}

// Quantity is an amount in the API's notation: "1500m" cpus, "4Gi" bytes.
type Quantity string

// MilliQuantity is n thousandths, as the API writes them ("2", "1500m").
func MilliQuantity(n int64) Quantity {
	if n%1000 == 0 {
		return Quantity(strconv.FormatInt(n/1000, 10))
	}
	return Quantity(strconv.FormatInt(n, 10) + "m")
}

// BinaryQuantity is n units with binary suffixes where exact ("4Gi").
func BinaryQuantity(n int64) Quantity {
	for _, s := range []struct {
		suffix string
		shift  uint
	}{{"Ei", 60}, {"Pi", 50}, {"Ti", 40}, {"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n != 0 && n%(1<<s.shift) == 0 {
			return Quantity(strconv.FormatInt(n>>s.shift, 10) + s.suffix)
		}
	}
	return Quantity(strconv.FormatInt(n, 10))
}

// DecimalQuantity is n units ("2").
func DecimalQuantity(n int64) Quantity { return Quantity(strconv.FormatInt(n, 10)) }

// TolerationOperator is how a toleration matches a taint's value.
type TolerationOperator string

// The operators.
const (
	TolerationOpExists TolerationOperator = "Exists"
	TolerationOpEqual  TolerationOperator = "Equal"
)

// TaintEffect is what a taint does to pods that do not tolerate it.
type TaintEffect string

// The effects.
const (
	TaintEffectNoSchedule       TaintEffect = "NoSchedule"
	TaintEffectPreferNoSchedule TaintEffect = "PreferNoSchedule"
	TaintEffectNoExecute        TaintEffect = "NoExecute"
)

// Toleration lets a pod on nodes with a taint.
type Toleration struct {
	Key               string             `json:"key,omitempty"`
	Operator          TolerationOperator `json:"operator,omitempty"`
	Value             string             `json:"value,omitempty"`
	Effect            TaintEffect        `json:"effect,omitempty"`
	TolerationSeconds *int64             `json:"tolerationSeconds,omitempty"`
}

// PodPhase is where a pod is in its life.
type PodPhase string

// The phases.
const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
	PodUnknown   PodPhase = "Unknown"
)

// PodConditionType names a condition of a pod.
type PodConditionType string

// PodScheduled: whether the scheduler found the pod a node.
const PodScheduled PodConditionType = "PodScheduled"

// ConditionStatus is whether a condition holds.
type ConditionStatus string

// ConditionFalse: it does not.
const ConditionFalse ConditionStatus = "False"

// PodCondition is a condition of a pod, with why.
type PodCondition struct {
	Type    PodConditionType `json:"type"`
	Status  ConditionStatus  `json:"status"`
	Reason  string           `json:"reason,omitempty"`
	Message string           `json:"message,omitempty"`
}

// PodStatus is what became of a pod.
type PodStatus struct {
	Phase             PodPhase          `json:"phase,omitempty"`
	Conditions        []PodCondition    `json:"conditions,omitempty"`
	Message           string            `json:"message,omitempty"`
	Reason            string            `json:"reason,omitempty"`
	ContainerStatuses []ContainerStatus `json:"containerStatuses,omitempty"`
}

// ContainerStatus is what became of a container.
type ContainerStatus struct {
	Name  string         `json:"name"`
	State ContainerState `json:"state,omitempty"`
}

// ContainerState is a container's state: one of its fields is set.
type ContainerState struct {
	Waiting    *ContainerStateWaiting    `json:"waiting,omitempty"`
	Running    *ContainerStateRunning    `json:"running,omitempty"`
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateWaiting is a container that has not started, and why.
type ContainerStateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// ContainerStateRunning is a running container.
type ContainerStateRunning struct {
	StartedAt Time `json:"startedAt,omitempty"`
}

// ContainerStateTerminated is a container that exited.
type ContainerStateTerminated struct {
	ExitCode int32  `json:"exitCode"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
}
