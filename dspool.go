// Package dspool holds the domain types shared by every part of dspool: jobs,
// nodes, pools, users and the error codes that cross package boundaries.
//
// It imports nothing outside the standard library and does no I/O, so any other
// package can depend on it.
package dspool

import (
	"fmt"
	"time"
)

// JobState is where a job is in its lifecycle:
// queued -> running -> succeeded | failed | cancelled.
type JobState string

const (
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Terminal reports whether no further transition can happen.
func (s JobState) Terminal() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// Valid reports whether s is one of the known states.
func (s JobState) Valid() bool {
	switch s {
	case JobQueued, JobRunning, JobSucceeded, JobFailed, JobCancelled:
		return true
	}
	return false
}

// Reason says why an attempt ended in failure.
type Reason string

const (
	ReasonExit       Reason = "exit"        // the command exited non-zero or was killed by a signal
	ReasonTimeout    Reason = "timeout"     // the job's time limit passed
	ReasonNodeLost   Reason = "node_lost"   // the node stopped heartbeating past its grace period
	ReasonStartError Reason = "start_error" // the command could not be started
	// ReasonNodeRemoved: an admin removed the node, or deleted its pool,
	// with --force while the attempt ran.
	ReasonNodeRemoved Reason = "node_removed"
	// ReasonDependency: a job it was to run after ended so that it never
	// could (Message says which).
	ReasonDependency Reason = "dependency"
	// ReasonPreempted: a job of a higher score needed the node; the job
	// waits again in the queue, neither failed nor retried
	// (docs/decisions/0034-preemption.md).
	ReasonPreempted Reason = "preempted"
)

// Job is a batch command with its resources and its current state.
type Job struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	User     string   `json:"user"`
	Team     string   `json:"team,omitempty"` // whose limits and grant apply ("": none)
	Pool     string   `json:"pool"`
	State    JobState `json:"state"`
	Reason   Reason   `json:"reason"`
	ExitCode *int     `json:"exit_code"`
	Message  string   `json:"message,omitempty"`
	// Attempt numbers executions from 1; it is the fencing token every report
	// from an agent must carry.
	Attempt    int      `json:"attempt"`
	Node       string   `json:"node"`
	CPUs       MilliCPU `json:"cpus"`
	Memory     Bytes    `json:"memory"`
	GPUs       int      `json:"gpus"`
	GPUType    string   `json:"gpu_type,omitempty"`
	GPUMemory  Bytes    `json:"gpu_memory,omitempty"`
	GPUIndices []int    `json:"gpu_indices,omitempty"`
	// GPUsHeld describes the GPUs of GPUIndices, as the node reported them,
	// and GPUsBusy those of them at work at the node's last sample (filled
	// where a job is shown on its own).
	GPUsHeld        []GPU             `json:"gpus_held,omitempty"`
	GPUsBusy        []int             `json:"gpus_busy,omitempty"`
	TimeLimit       Duration          `json:"time_limit,omitempty"`
	Retries         int               `json:"retries"`
	Priority        int               `json:"priority"`
	Env             map[string]string `json:"env,omitempty"`
	Workdir         string            `json:"workdir"`
	Command         []string          `json:"command"`
	Secrets         []SecretUse       `json:"secrets,omitempty"`
	Image           string            `json:"image,omitempty"` // as submitted; the pool's applies when empty
	CancelRequested bool              `json:"cancel_requested,omitempty"`
	// Schedule names the schedule of the job's user that submitted it
	// ("": none), and Slot is the time of the slot it runs for.
	Schedule string     `json:"schedule,omitempty"`
	Slot     *time.Time `json:"slot,omitempty"`
	// Waiting says, for a queued job, how the wait for a node goes ("1 of
	// 1 starting") when its pool is getting one.
	Waiting     string     `json:"waiting,omitempty"`
	Held        bool       `json:"held,omitempty"` // it waits because running would take its team or user over a limit (Waiting says which)
	SubmittedAt time.Time  `json:"submitted_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	// ArrayID is the array the job is a task of (0: none), ArrayIndex its
	// index there.
	ArrayID    int64 `json:"array_id,omitempty"`
	ArrayIndex *int  `json:"array_index,omitempty"`
	// After is what the job waits for ("ok:12,any:40_3"); AfterMet says
	// it no longer waits for it.
	After    string `json:"after,omitempty"`
	AfterMet bool   `json:"after_met,omitempty"`
	// OnHold: a user held the job; it runs once released.
	OnHold bool `json:"on_hold,omitempty"`
	// Preemptible: a job of a higher score may evict it; Preemptions is
	// how many times one has, PreemptRequested that an eviction is under
	// way (docs/decisions/0034-preemption.md).
	Preemptible      bool `json:"preemptible,omitempty"`
	Preemptions      int  `json:"preemptions,omitempty"`
	PreemptRequested bool `json:"preempt_requested,omitempty"`
	// Array sums up the whole array on its first task, in lists that show
	// an array as one line and where the array is asked for.
	Array *ArraySummary `json:"array,omitempty"`
}

// Ref names the job as users write it: "12", or "40_7" for a task.
func (j *Job) Ref() string {
	if j.ArrayID != 0 && j.ArrayIndex != nil {
		return TaskRef{ID: j.ArrayID, Index: *j.ArrayIndex}.String()
	}
	return TaskRef{ID: j.ID, Index: -1}.String()
}

// ArraySummary is an array as a whole: its indices, its cap, and how many
// of its tasks are in each state.
type ArraySummary struct {
	ID         int64            `json:"id"`
	Indices    string           `json:"indices"` // "0-999%50"
	Tasks      int              `json:"tasks"`
	MaxRunning int              `json:"max_running,omitempty"`
	Counts     map[JobState]int `json:"counts"`
}

// State is the array's state as one word: running while any task runs,
// queued while any waits, then failed if any task failed, cancelled if
// any was, else succeeded.
func (a *ArraySummary) State() JobState {
	for _, s := range []JobState{JobRunning, JobQueued, JobFailed, JobCancelled} {
		if a.Counts[s] > 0 {
			return s
		}
	}
	return JobSucceeded
}

// Done reports whether every task has ended.
func (a *ArraySummary) Done() bool { return a.Counts[JobQueued] == 0 && a.Counts[JobRunning] == 0 }

// Attempt is one execution of a job on one node.
type Attempt struct {
	Job        int64      `json:"job"`
	Number     int        `json:"attempt"`
	Node       string     `json:"node"`
	GPUIndices []int      `json:"gpu_indices,omitempty"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	ExitCode   *int       `json:"exit_code"`
	Reason     Reason     `json:"reason,omitempty"`
	Message    string     `json:"message,omitempty"`
}

// NodeState is where a node is in its lifecycle:
// provisioning -> ready -> draining -> gone; ready -> lost -> ready | gone;
// provisioning -> failed when its setup script fails. A node is gone when
// an admin or the autoscaler removed it (its credential is refused from
// then on), when its agent stopped on purpose, or when it stayed lost past
// the server's node_gone_after; in the last two cases it comes back when
// its agent connects again.
type NodeState string

const (
	NodeProvisioning NodeState = "provisioning"
	NodeReady        NodeState = "ready"
	NodeDraining     NodeState = "draining"
	NodeLost         NodeState = "lost"
	NodeFailed       NodeState = "failed"
	NodeGone         NodeState = "gone"
)

// GPU is one accelerator found on a node.
type GPU struct {
	Index  int    `json:"index"`
	Name   string `json:"name,omitempty"`
	UUID   string `json:"uuid,omitempty"`
	Memory Bytes  `json:"memory,omitempty"`
	// MIG marks a MIG instance of GPU Parent: a unit scheduled on its own,
	// named by its UUID (MIG-...) in CUDA_VISIBLE_DEVICES. Its Index is
	// the node's own number for it, past those of the whole GPUs.
	MIG    bool `json:"mig,omitempty"`
	Parent int  `json:"parent,omitempty"`
	// BusID is its PCI address as nvidia-smi gives it.
	BusID string `json:"bus_id,omitempty"`
}

// Inventory is what a node has to offer.
type Inventory struct {
	CPUs   MilliCPU `json:"cpus"`
	Memory Bytes    `json:"memory"`
	GPUs   []GPU    `json:"gpus"`
	// Podman is the version of podman the node runs jobs in images with;
	// empty when it cannot (ImagesWhy says why).
	Podman    string `json:"podman,omitempty"`
	ImagesWhy string `json:"images_why,omitempty"`
}

// Usage is what a node reports it is using right now.
type Usage struct {
	Load1    float64 `json:"load1"`
	MemUsed  Bytes   `json:"mem_used"`
	Attempts int     `json:"attempts"`
	// GPUsBusy are the indices of the GPUs at work at the last sample
	// (nvidia-smi, every few seconds).
	GPUsBusy []int `json:"gpus_busy,omitempty"`
	// The share's file system as the node sees it: its size and free room
	// for users, and its inodes and free inodes; zero when unknown.
	ShareSize      Bytes `json:"share_size,omitempty"`
	ShareFree      Bytes `json:"share_free,omitempty"`
	ShareFiles     int64 `json:"share_files,omitempty"`
	ShareFilesFree int64 `json:"share_files_free,omitempty"`
}

// A node's share is full below this free room or these free inodes, or 1%
// of the file system's, whichever is less: a job started there would fail
// to write its output.
const (
	ShareLowBytes = Bytes(100 << 20)
	ShareLowFiles = 10000
)

// ShareFull says why the node's share has no room for new work, or "" when
// it has room (or its room is unknown).
func (u Usage) ShareFull() string {
	if u.ShareSize > 0 && u.ShareFree < min(ShareLowBytes, u.ShareSize/100) {
		return fmt.Sprintf("the share is full: %s free of %s; free room on it, or give users quotas (docs/guide.md)", u.ShareFree, u.ShareSize)
	}
	if u.ShareFiles > 0 && u.ShareFilesFree < min(ShareLowFiles, u.ShareFiles/100) {
		return fmt.Sprintf("the share is out of inodes: %d free of %d; remove files from it", u.ShareFilesFree, u.ShareFiles)
	}
	return ""
}

// Node is one machine of a pool, running an agent.
type Node struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Pool      string            `json:"pool"`
	State     NodeState         `json:"state"`
	Message   string            `json:"message,omitempty"`
	Inventory Inventory         `json:"inventory"`
	Allocated Allocation        `json:"allocated"`
	Usage     Usage             `json:"usage"`
	Labels    map[string]string `json:"labels,omitempty"`
	Version   string            `json:"version,omitempty"`
	// Accounts are the accounts and groups on the node whose ids lie in
	// the store's uid range and that are not its users' own (account.go):
	// new users do not get their ids, and a user whose uid or gid one
	// holds gets no work on the node.
	Accounts  []HostAccount `json:"accounts,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	LastSeen  *time.Time    `json:"last_seen"`
	// IdleSince is when a ready node last had work, while it has none: its
	// pool's autoscaler removes it once it has been idle for the pool's
	// idle_timeout, unless the pool would go below its minimum (nil: busy,
	// or not known yet).
	IdleSince *time.Time `json:"idle_since,omitempty"`
}

// Allocation is the part of a node's inventory held by running attempts.
type Allocation struct {
	CPUs   MilliCPU `json:"cpus"`
	Memory Bytes    `json:"memory"`
	GPUs   []int    `json:"gpus"`
}

// User is an identity with a fixed uid/gid that is the same on every node.
type User struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	UID       int       `json:"uid"`
	GID       int       `json:"gid"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	// Disabled users cannot authenticate anywhere (see `dspool user
	// disable`).
	Disabled bool `json:"disabled,omitempty"`
	// Email (lower case) links the user to their account at the identity
	// provider for single sign-on; set where the user is listed or created.
	Email string `json:"email,omitempty"`
}

// Token scopes: what an API token may do. A token holds one or more; a web
// login may do everything its user may.
const (
	ScopeRead     = "read"     // read jobs, logs, pools, nodes, sessions, usage, events
	ScopeJobs     = "jobs"     // submit and cancel jobs
	ScopeSessions = "sessions" // start and stop Jupyter servers, kill sessions
	ScopeAccount  = "account"  // the account itself: keys, tokens, password, secrets, teams one maintains
	ScopeAdmin    = "admin"    // the pool, for an admin user; includes account and gateway
	// ScopeGateway lets an SSH gateway of its own process (`dspool
	// gateway`) log users in and open their sessions; an admin user's
	// token only.
	ScopeGateway = "gateway"
)

// Scopes are every token scope, in order.
var Scopes = []string{ScopeRead, ScopeJobs, ScopeSessions, ScopeAccount, ScopeAdmin, ScopeGateway}

// EffectiveScopes returns what scopes let a token of a user do, in the order
// of Scopes: admin includes account and gateway, and only an admin user's
// token has admin or gateway; for anyone else admin is account, the account
// alone. Tokens made before the account scope existed hold admin for it.
func EffectiveScopes(scopes []string, admin bool) []string {
	has := map[string]bool{}
	for _, x := range scopes {
		has[x] = true
	}
	if has[ScopeAdmin] {
		has[ScopeAccount] = true
		has[ScopeGateway] = true
		has[ScopeAdmin] = admin
	}
	has[ScopeGateway] = has[ScopeGateway] && admin
	out := make([]string, 0, len(Scopes))
	for _, x := range Scopes {
		if has[x] {
			out = append(out, x)
		}
	}
	return out
}

// Token is an API token's metadata; the secret itself is shown once at
// creation and stored only as a hash.
type Token struct {
	ID        int64     `json:"id"`
	User      string    `json:"user"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is nil for a token that does not expire.
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// LastUsed is written at most once a minute.
	LastUsed *time.Time `json:"last_used"`
}

// JoinToken is a join token's metadata; the secret itself is shown once at
// creation and stored only as a hash.
type JoinToken struct {
	ID        int64     `json:"id"`
	Pool      string    `json:"pool"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the admin who made it ("" for the control plane's own,
	// for `dspool up`'s local agents).
	CreatedBy string `json:"created_by,omitempty"`
	// ExpiresAt is nil for a token that does not expire.
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}
