// Package api is dspool's wire protocol: the request and response types of
// the REST API under /api/v1 and of the agent protocol, and a typed Go client
// that the CLI, the agent and the tests use.
//
// It never talks to the store; it only speaks HTTP.
package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// JobDetail is a job with its attempts.
type JobDetail struct {
	*dspool.Job
	Attempts []dspool.Attempt `json:"attempts"`
}

// JobPriority is the body of POST /api/v1/jobs/{id}/priority.
type JobPriority struct {
	Priority *int `json:"priority"`
}

// JobList is a page of jobs, newest first; Next is the value to pass as
// before= for the next page (0 when there is none).
type JobList struct {
	Jobs []*dspool.Job `json:"jobs"`
	Next int64         `json:"next,omitempty"`
}

// ScheduleDetail is a schedule with its latest runs, newest first.
type ScheduleDetail struct {
	*dspool.Schedule
	Runs []*dspool.Job `json:"runs"`
}

// ScheduleList is every schedule of a user (or, for an admin who asks,
// of everyone), by user and name.
type ScheduleList struct {
	Schedules []*dspool.Schedule `json:"schedules"`
}

// PoolApply is the body of POST /api/v1/pools: all pools are validated
// before any is stored.
type PoolApply struct {
	Pools []*dspool.Pool `json:"pools"`
}

// PoolDetail is a pool with its nodes.
type PoolDetail struct {
	*dspool.Pool
	Nodes []*dspool.Node `json:"nodes"`
}

// PoolEventList is the answer of GET /api/v1/pools/{name}/events: a page
// of the newest events, oldest first; Next is the value to pass as before=
// for the page of older ones (0 when there is none).
type PoolEventList struct {
	Events []*dspool.PoolEvent `json:"events"`
	Next   int64               `json:"next,omitempty"`
}

// JoinToken is a secret an agent presents to join Pool. When the control
// plane has its own CA, Token carries the CA's pin after the secret
// ("dspj_SECRET.HEX"), so an agent given only the token verifies the server
// on first contact; CAPin is that pin ("sha256:HEX").
type JoinToken struct {
	Pool  string `json:"pool"`
	Token string `json:"token"`
	CAPin string `json:"ca_pin,omitempty"`
	// ID names the token to revoke it; ExpiresAt is nil for a token that
	// does not expire.
	ID        int64      `json:"id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// JoinTokenWithPin is the join token an agent is given: secret and the
// CA's pin ("sha256:HEX") after a dot; the secret alone when pin is "".
func JoinTokenWithPin(secret, pin string) string {
	if pin == "" {
		return secret
	}
	return secret + "." + strings.TrimPrefix(pin, "sha256:")
}

// SplitJoinToken returns a join token's secret, which the server knows by
// its hash, and the CA pin it carries ("sha256:HEX", "" when none).
func SplitJoinToken(tok string) (secret, pin string) {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return tok, ""
	}
	return tok[:i], "sha256:" + tok[i+1:]
}

// JoinTokenCreate is the optional body of POST
// /api/v1/pools/{name}/join-tokens.
type JoinTokenCreate struct {
	// TTL is how long the token joins nodes: 0 (or no body) is
	// DefaultJoinTokenTTL; Never makes one that does not expire.
	TTL   dspool.Duration `json:"ttl,omitempty"`
	Never bool            `json:"never,omitempty"`
}

// DefaultJoinTokenTTL is how long a new join token joins nodes unless
// asked otherwise.
const DefaultJoinTokenTTL = 24 * time.Hour

// JoinTokenList is the answer of GET /api/v1/pools/{name}/join-tokens and
// of the revocations: join tokens' metadata, never their secrets.
type JoinTokenList struct {
	Tokens []*dspool.JoinToken `json:"tokens"`
}

// NodeChange is the answer of draining, undraining and removing a node.
type NodeChange struct {
	Node *dspool.Node `json:"node"`
	// Jobs are the jobs running on the node: still running there after a
	// drain, ended by a forced removal.
	Jobs     []int64 `json:"jobs"`
	Sessions int     `json:"sessions"`
	// Note says what happens next, when it is not obvious (a pool that
	// keeps its count starts another node).
	Note string `json:"note,omitempty"`
}

// PoolDeletion is the answer of DELETE /api/v1/pools/{name}: the nodes it
// removed and the jobs and sessions it ended (with --force).
type PoolDeletion struct {
	Pool     string   `json:"pool"`
	Nodes    []string `json:"nodes"`
	Jobs     []int64  `json:"jobs"`
	Sessions int      `json:"sessions"`
}

// UserCreate is the body of POST /api/v1/users.
type UserCreate struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin,omitempty"`
	// Email links the user to their identity provider account for single
	// sign-on.
	Email string `json:"email,omitempty"`
}

// NewUser is the answer to a user's creation: the user, and what may stop
// their work on some node (accounts there that hold their uid or name), or
// which uids they did not get because accounts on nodes hold them.
type NewUser struct {
	dspool.User
	Warnings []string `json:"warnings,omitempty"`
}

// EmailSet is the body of PUT /api/v1/users/{name}/email; "" removes it.
type EmailSet struct {
	Email string `json:"email"`
}

// TokenCreate is the body of POST /api/v1/tokens; an empty User means the
// caller. Empty Scopes are those of the token that asks (every scope for a
// web login); a nil ExpiresAt is that token's expiry (never for a web
// login), unless Never is set: a token never gets more than the token that
// made it.
type TokenCreate struct {
	User      string     `json:"user,omitempty"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Never asks for a token that does not expire: refused when the token
	// that asks expires.
	Never bool `json:"never,omitempty"`
	// CapExpiry makes an ExpiresAt later than the asking token's expiry
	// that expiry, rather than an error: for a default the user did not
	// choose.
	CapExpiry bool `json:"cap_expiry,omitempty"`
}

// TokenList is the answer of GET /api/v1/tokens: tokens' metadata, never
// their secrets.
type TokenList struct {
	Tokens []*dspool.Token `json:"tokens"`
}

// AuditList is the answer of GET /api/v1/audit: a page of the newest
// entries, oldest first; Next is the value to pass as before= for the page
// of older ones (0 when there is none).
type AuditList struct {
	Entries []*dspool.AuditEntry `json:"entries"`
	Next    int64                `json:"next,omitempty"`
}

// NewToken is a created API token: Secret is shown only here.
type NewToken struct {
	dspool.Token
	Secret string `json:"token"`
}

// ErrorBody is every error response.
type ErrorBody struct {
	Error *dspool.Error `json:"error"`
}

// HTTPStatus is the HTTP status of an answer that fails with an error of
// code (dspool.EInvalid...): the one mapping of the server and the pages.
func HTTPStatus(code string) int {
	switch code {
	case dspool.EInvalid:
		return http.StatusBadRequest
	case dspool.ENotFound:
		return http.StatusNotFound
	case dspool.EConflict:
		return http.StatusConflict
	case dspool.EUnauthorized:
		return http.StatusUnauthorized
	case dspool.EForbidden:
		return http.StatusForbidden
	case dspool.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case dspool.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Agent protocol. An agent registers once with a join token over plain
// HTTPS, then holds one upgraded connection multiplexed with yamux: it sends
// heartbeats to the server, and the server sends it attempts to start and to
// kill, each an HTTP request on its own stream.

// RegisterRequest is the body of POST /api/v1/agents/register.
type RegisterRequest struct {
	JoinToken string            `json:"join_token"`
	Pool      string            `json:"pool,omitempty"`
	Name      string            `json:"name"`
	Inventory dspool.Inventory  `json:"inventory"`
	Labels    map[string]string `json:"labels,omitempty"`
	Version   string            `json:"version,omitempty"`
	// ShareID is what the agent read in its share's marker (share.IDFile;
	// "" when there is none).
	ShareID string `json:"share_id"`
	// ShareWritable says whether work on the node could write the share.
	ShareWritable bool `json:"share_writable"`
	// ShareMode is what root on the node may do on the share
	// (share.ModeOwners, share.ModeSquashed); ShareProblem says why the
	// node could not use its share, when it could not.
	ShareMode    string `json:"share_mode,omitempty"`
	ShareProblem string `json:"share_problem,omitempty"`
}

// RegisterResponse gives the new node its identity and credential.
type RegisterResponse struct {
	Node       string `json:"node"`
	Name       string `json:"name"`
	Pool       string `json:"pool"`
	Credential string `json:"credential"`
}

// AttemptRef names one attempt of one job.
type AttemptRef struct {
	Job     int64 `json:"job"`
	Attempt int   `json:"attempt"`
}

// Kill asks an agent to stop an attempt: SIGTERM, then SIGKILL after the
// grace. Reason is preempted for an eviction, whose grace is the
// attempt's PreemptGrace; empty for a cancel.
type Kill struct {
	AttemptRef
	Reason dspool.Reason `json:"reason,omitempty"`
}

// RunAs is the account an attempt runs as.
type RunAs struct {
	Name string `json:"name"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// AttemptSpec tells an agent to start one attempt. Paths are relative to the
// share's root.
type AttemptSpec struct {
	AttemptRef
	Name        string            `json:"name"`
	Pool        string            `json:"pool"`
	User        RunAs             `json:"user"`
	Command     []string          `json:"command"`
	Env         map[string]string `json:"env,omitempty"`
	Workdir     string            `json:"workdir"`
	Home        string            `json:"home"`
	JobDir      string            `json:"job_dir"`
	Log         string            `json:"log"`
	CPUs        dspool.MilliCPU   `json:"cpus"`
	Memory      dspool.Bytes      `json:"memory"`
	GPUs        []int             `json:"gpus"`
	TimeLimit   dspool.Duration   `json:"time_limit,omitempty"`
	KillGrace   dspool.Duration   `json:"kill_grace"`
	OutputLimit dspool.Bytes      `json:"output_limit"`
	// PreemptGrace is, for a preemptible job, the time between SIGTERM
	// and SIGKILL when it is evicted (0: the job is not preemptible);
	// the job reads it from DSPOOL_PREEMPT_GRACE.
	PreemptGrace dspool.Duration `json:"preempt_grace,omitempty"`
	// Secrets are the values of the secrets the job asks for, sent at
	// each start and never kept by the agent past the attempt.
	Secrets []SecretValue `json:"secrets,omitempty"`
	// WorkToken is the API token the attempt's processes get in
	// DSPOOL_TOKEN: its user's, good only while the attempt runs
	// (docs/decisions/0021-work-tokens.md). Like Secrets, never logged.
	WorkToken string `json:"work_token,omitempty"`
	// Image, when set, is the image the attempt runs in: an image's name
	// on the node, or with ImageFile a file on the share, as a path
	// relative to the share's root or an absolute path on the nodes.
	Image     string `json:"image,omitempty"`
	ImageFile bool   `json:"image_file,omitempty"`
	// ImageNetwork is "host" or "none" (the pool's image_network).
	ImageNetwork string `json:"image_network,omitempty"`
	// After, on a start the server pushes outside a heartbeat reply, is
	// the number of replies it had begun on the connection before it
	// placed the attempt. Every later reply carries the start while it is
	// wanted, so an agent that has applied one ignores the push: it would
	// come late, perhaps after the attempt ran and was acknowledged.
	After uint64 `json:"after,omitempty"`
	// ArrayID and ArrayIndex place a task in its array (ArrayID 0: not
	// a task); the agent hands them on in DSPOOL_ARRAY_ID and
	// DSPOOL_ARRAY_INDEX.
	ArrayID    int64 `json:"array_id,omitempty"`
	ArrayIndex int   `json:"array_index,omitempty"`
}

// AttemptStatus is what an agent knows of one attempt.
type AttemptStatus struct {
	AttemptRef
	Running    bool                  `json:"running"`
	StartedAt  *time.Time            `json:"started_at,omitempty"`
	FinishedAt *time.Time            `json:"finished_at,omitempty"`
	Result     *dspool.AttemptResult `json:"result,omitempty"`
}

// Heartbeat is sent by an agent on every change and at its interval. An
// agent sends one at a time, so the server sees its snapshots in order, and
// each lists every attempt the agent knows of in this boot that the server
// has not acknowledged as finished.
type Heartbeat struct {
	Boot      string           `json:"boot"`
	State     dspool.NodeState `json:"state"` // provisioning, ready or failed
	Message   string           `json:"message,omitempty"`
	Inventory dspool.Inventory `json:"inventory"`
	Usage     dspool.Usage     `json:"usage"`
	Version   string           `json:"version,omitempty"`
	Attempts  []AttemptStatus  `json:"attempts"`
	// Leaving is set on the last heartbeat of an agent that stops on
	// purpose: its node leaves the pool at once rather than being lost
	// after the grace.
	Leaving bool `json:"leaving,omitempty"`
	// Accounts is sent when the server asked for another range, or the
	// machine's accounts changed, since the last one; nil otherwise.
	Accounts *AccountReport `json:"accounts,omitempty"`
	// Sessions lists the sessions this node hosts: a restarted control
	// plane takes up those it finds here and ends the others
	// (docs/decisions/0017-sessions-outlive-the-control-plane.md).
	Sessions []HostedSession `json:"sessions"`
}

// HostedSession is a session an agent hosts.
type HostedSession struct {
	Session string `json:"session"`
	// NotebookToken is the secret of the session's Jupyter server, when
	// one runs: a restarted control plane learns it here, on the node's
	// verified link, and keeps it in memory only.
	NotebookToken string `json:"notebook_token,omitempty"`
}

// AccountReport lists the accounts and groups of a node's machine whose ids
// lie in Range (from its local files, /etc/passwd and /etc/group).
type AccountReport struct {
	Range    dspool.UIDRange      `json:"range"`
	Accounts []dspool.HostAccount `json:"accounts"`
}

// HeartbeatReply tells the agent what to do.
type HeartbeatReply struct {
	Pool     *dspool.Pool    `json:"pool,omitempty"`
	Interval dspool.Duration `json:"interval"`
	Start    []AttemptSpec   `json:"start,omitempty"`
	Kill     []AttemptRef    `json:"kill,omitempty"`
	// Ack lists finished attempts the server has recorded: the agent may
	// forget them.
	Ack []AttemptRef `json:"ack,omitempty"`
	// Accounts is the range of ids whose accounts the server wants
	// reported: its users' uids and those the next users will get.
	Accounts *dspool.UIDRange `json:"accounts,omitempty"`
	// Seq numbers the replies of one connection (1, 2, ...) in the order
	// the server began them.
	Seq uint64 `json:"seq,omitempty"`
	// EndSessions lists sessions the node reported that the server does
	// not know as live (they ended while it could not tell the node): the
	// agent ends them.
	EndSessions []string `json:"end_sessions,omitempty"`
}

// AgentUpgrade is the Upgrade header value of the agent connection.
const AgentUpgrade = "dspool-agent/1"

// NodeGraceHeader, in the server's answer to the agent connection, is the
// node grace (a Go duration): an agent that has had no answer to a
// heartbeat for that long since sending it stops its attempts itself, as
// the server retries them elsewhere only later (see
// docs/decisions/0014-an-attempt-never-runs-beside-its-retry.md).
const NodeGraceHeader = "Dspool-Node-Grace"

// LeaderTermHeader, in the server's answer to the agent connection, is the
// term of the lease the control plane leads under, where control planes
// take turns on one store (docs/decisions/0039-leading-control-planes.md).
// An agent refuses a connection answered with a term below the highest it
// has seen: that control plane no longer leads.
const LeaderTermHeader = "Dspool-Leader-Term"

// HeardHeader is set on every answer of the server's heartbeat handler,
// errors included, once it has recorded the contact: the agent counts
// only such answers as contact when it fences itself.
const HeardHeader = "Dspool-Heard"
