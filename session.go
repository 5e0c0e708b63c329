package dspool

import (
	"fmt"
	"strings"
	"time"
)

// SessionKind is how a user reaches an interactive session.
type SessionKind string

const (
	SessionSSH     SessionKind = "ssh"
	SessionJupyter SessionKind = "jupyter"
)

// SessionState is where a session is in its life.
type SessionState string

const (
	SessionPending SessionState = "pending" // waiting for a node
	SessionActive  SessionState = "active"
	SessionEnded   SessionState = "ended"
)

// Session is a user's interactive presence on one node of a pool: every SSH
// connection of that user to the pool lands on the same node and shares the
// session and its reservation, until the last one closes.
type Session struct {
	ID       string      `json:"id"`
	User     string      `json:"user"`
	Kind     SessionKind `json:"kind"`
	Pool     string      `json:"pool"`
	Node     string      `json:"node"`
	NodeName string      `json:"node_name,omitempty"`
	CPUs     MilliCPU    `json:"cpus"`
	Memory   Bytes       `json:"memory"`
	// Size names the size the session was asked with (a profile, or
	// inline: SessionSize.Key); "" the pool's own. GPUIndices are the
	// node's GPUs it holds; EndsAt when its time runs out (nil: none).
	Size         string       `json:"size,omitempty"`
	GPUIndices   []int        `json:"gpu_indices,omitempty"`
	EndsAt       *time.Time   `json:"ends_at,omitempty"`
	State        SessionState `json:"state"`
	Remote       string       `json:"remote,omitempty"`
	Connections  int          `json:"connections"`
	StartedAt    time.Time    `json:"started_at"`
	LastActivity time.Time    `json:"last_activity"`
	EndedAt      *time.Time   `json:"ended_at,omitempty"`
	EndReason    string       `json:"end_reason,omitempty"`
	BytesIn      int64        `json:"bytes_in"`
	BytesOut     int64        `json:"bytes_out"`
}

// SSHKey is a public key a user logs in with.
type SSHKey struct {
	ID          int64      `json:"id"`
	User        string     `json:"user"`
	Type        string     `json:"type"`
	Fingerprint string     `json:"fingerprint"` // SHA256:..., as ssh-keygen -l prints it
	Comment     string     `json:"comment,omitempty"`
	Key         string     `json:"key"` // authorized_keys format, without the comment
	CreatedAt   time.Time  `json:"created_at"`
	LastUsed    *time.Time `json:"last_used,omitempty"`
}

// SessionSpec is how a pool serves interactive sessions.
type SessionSpec struct {
	// CPUs and Memory are reserved on the node for each session, so jobs
	// and sessions share nodes without oversubscription; they also bound
	// what the session's processes may use.
	CPUs   MilliCPU `json:"cpus" yaml:"cpus"`
	Memory Bytes    `json:"memory" yaml:"memory"`
	// Default makes this the pool of logins that name no pool.
	Default bool `json:"default,omitempty" yaml:"default"`
	// Forwarding says where `ssh -L` may connect from the node: "local"
	// (the node's loopback, the default), "any", or "none".
	Forwarding string `json:"forwarding" yaml:"forwarding"`
	// Placement is where new sessions go: "spread" (the least-loaded node
	// with room, so users feel no busy neighbour) or "pack" (the most-used
	// node with room, so that the fewest nodes stay up). The default is pack
	// in a pool that autoscales, spread otherwise.
	Placement string `json:"placement,omitempty" yaml:"placement"`
	// Jupyter is the command line of users' Jupyter servers (default
	// DefaultJupyter); dspool adds the address, base URL and root directory.
	Jupyter []string `json:"jupyter,omitempty" yaml:"jupyter"`
	// JupyterTimeout bounds a Jupyter server's start (default 60s).
	JupyterTimeout Duration `json:"jupyter_timeout,omitempty" yaml:"jupyter_timeout"`
	// JupyterIdle is how long a Jupyter server may go unused (no busy
	// kernel, no traffic, no cpu) before it is stopped (default 1h).
	JupyterIdle Duration `json:"jupyter_idle,omitempty" yaml:"jupyter_idle"`
	// Idle is how long an SSH session may go without traffic (and, when it
	// holds GPUs, without work on them) before it is ended (0: no limit;
	// it ends when its last connection closes).
	Idle Duration `json:"idle,omitempty" yaml:"idle"`
	// Profiles are the sizes users may choose for their sessions and
	// Jupyter servers besides the pool's own (cpus, memory above):
	// `ssh USER+POOL+PROFILE@pool`, `dspool notebook start --profile`,
	// the web page.
	Profiles []SessionSize `json:"profiles,omitempty" yaml:"profiles"`
}

// DefaultJupyter runs Debian's jupyter-server with the system Python,
// opening on the classic notebook page (python3-nbclassic).
var DefaultJupyter = []string{"/usr/bin/python3", "-m", "jupyter_server", "--ServerApp.default_url=/tree"}

// Jupyter server defaults.
const (
	DefaultJupyterTimeout = 60 * time.Second
	DefaultJupyterIdle    = time.Hour
)

// NotebookState is where a user's Jupyter server is in its life.
type NotebookState string

const (
	NotebookStarting NotebookState = "starting"
	NotebookReady    NotebookState = "ready"
	NotebookStopped  NotebookState = "stopped"
	NotebookFailed   NotebookState = "failed"
)

// Notebook is a user's Jupyter server, reached at URL through the control
// plane.
type Notebook struct {
	User      string        `json:"user"`
	Pool      string        `json:"pool"`
	Node      string        `json:"node,omitempty"`
	NodeName  string        `json:"node_name,omitempty"`
	Session   string        `json:"session,omitempty"`
	State     NotebookState `json:"state"`
	URL       string        `json:"url"`
	StartedAt time.Time     `json:"started_at"`
	ReadyAt   *time.Time    `json:"ready_at,omitempty"`
	// IdleSince is when it was last used (a busy kernel, traffic, cpu);
	// StopsAt, when it will be stopped for being idle.
	IdleSince *time.Time `json:"idle_since,omitempty"`
	StopsAt   *time.Time `json:"stops_at,omitempty"`
	Message   string     `json:"message,omitempty"`
	// StartedBy is the credential that started it: "token 12" (revoking
	// the token stops it), "web login", or the job or session whose token
	// did ("job 7 attempt 1").
	StartedBy string `json:"started_by,omitempty"`
}

// Session defaults.
const (
	DefaultSessionCPUs   = MilliCPU(1000)
	DefaultSessionMemory = Bytes(2 << 30)
	ForwardLocal         = "local"
	ForwardAny           = "any"
	ForwardNone          = "none"
)

func (s *SessionSpec) normalize(prefix string, node NodeSize) error {
	if s.CPUs < 0 || s.CPUs > node.CPUs {
		return Invalid(prefix+"sessions.cpus", "must be between 0.001 and the node's %s cpus", node.CPUs)
	}
	if s.CPUs == 0 {
		s.CPUs = min(DefaultSessionCPUs, node.CPUs)
	}
	if s.Memory < 0 || s.Memory > node.Memory || s.Memory > 0 && s.Memory < MinMemory {
		return Invalid(prefix+"sessions.memory", "must be between 1MiB and the node's %s", node.Memory)
	}
	if s.Memory == 0 {
		s.Memory = min(DefaultSessionMemory, node.Memory)
	}
	if len(s.Jupyter) == 0 {
		s.Jupyter = append([]string(nil), DefaultJupyter...)
	}
	for i, a := range s.Jupyter {
		if err := ValidateText(fmt.Sprintf("%ssessions.jupyter[%d]", prefix, i), a, 4096); err != nil || a == "" {
			return Invalid(fmt.Sprintf("%ssessions.jupyter[%d]", prefix, i), "must be non-empty printable text")
		}
	}
	if s.JupyterTimeout < 0 || time.Duration(s.JupyterTimeout) > time.Hour {
		return Invalid(prefix+"sessions.jupyter_timeout", "must be between 1s and 1h")
	}
	if s.JupyterTimeout == 0 {
		s.JupyterTimeout = Duration(DefaultJupyterTimeout)
	}
	if s.JupyterIdle < 0 || s.JupyterIdle > 0 && time.Duration(s.JupyterIdle) < time.Second || time.Duration(s.JupyterIdle) > 30*24*time.Hour {
		return Invalid(prefix+"sessions.jupyter_idle", "must be between 1s and 30 days")
	}
	if s.JupyterIdle == 0 {
		s.JupyterIdle = Duration(DefaultJupyterIdle)
	}
	if s.Idle < 0 || s.Idle > 0 && time.Duration(s.Idle) < time.Second || time.Duration(s.Idle) > 30*24*time.Hour {
		return Invalid(prefix+"sessions.idle", "must be between 1s and 30 days, or 0 for no limit")
	}
	if err := s.normalizeProfiles(prefix, node); err != nil {
		return err
	}
	switch s.Placement {
	case "", PlacementSpread, PlacementPack:
	default:
		return Invalid(prefix+"sessions.placement", "%s is not a placement: use spread (least-loaded node) or pack (most-used node)", quote(s.Placement))
	}
	switch s.Forwarding {
	case "":
		s.Forwarding = ForwardLocal
	case ForwardLocal, ForwardAny, ForwardNone:
	default:
		return Invalid(prefix+"sessions.forwarding", "%s is not a forwarding policy: use local, any or none", quote(s.Forwarding))
	}
	return nil
}

// Login is what an SSH login name asks for: USER, USER+POOL to land in a
// named interactive pool, or USER+POOL+SIZE for a session of a size the
// pool offers (a profile's name, or inline: 8cpu-64gib-1gpu-4h).
type Login struct {
	User string
	Pool string // empty: the default interactive pool
	Size string // empty: the pool's own session size
}

// MaxLoginLen bounds an SSH login name.
const MaxLoginLen = 127

// ParseLogin parses an SSH login name. Names are dspool names (lowercase
// letters, digits and '-'), so a login can never name something else.
func ParseLogin(s string) (Login, error) {
	if len(s) > MaxLoginLen {
		return Login{}, Invalid("login", "is %d bytes long: at most %d", len(s), MaxLoginLen)
	}
	user, where, hasPool := strings.Cut(s, "+")
	if err := ValidateName("login", user); err != nil {
		return Login{}, Invalid("login", "%s: log in as USER, USER+POOL or USER+POOL+SIZE, where USER is a dspool user name", quote(user))
	}
	pool, size, hasSize := strings.Cut(where, "+")
	if hasPool {
		if err := ValidateName("login", pool); err != nil {
			return Login{}, Invalid("login", "pool %s in %s: log in as USER, USER+POOL or USER+POOL+SIZE, where POOL is an interactive pool", quote(pool), quote(s))
		}
	}
	if hasSize {
		if err := ValidateSizeName("login", size); err != nil {
			return Login{}, Invalid("login", "size %s in %s: log in as USER+POOL+SIZE, where SIZE is a profile of the pool or a size such as 8cpu-64gib-1gpu-4h", quote(size), quote(s))
		}
	}
	return Login{User: user, Pool: pool, Size: size}, nil
}

// ValidateSizeName checks that s may name a session size: a profile's
// name, or an inline size (which may start with a digit).
func ValidateSizeName(field, s string) error {
	if ValidName(s) {
		return nil
	}
	if _, inline, err := ParseSessionSize(s); inline && err == nil && ValidName("x"+s) {
		return nil
	}
	return Invalid(field, "%s is not a session size: give a profile of the pool, or a size such as 8cpu-64gib-1gpu-4h", quote(s))
}

// Where is what the login names after USER+: POOL, or POOL+SIZE.
func (l Login) Where() string {
	if l.Size == "" {
		return l.Pool
	}
	return l.Pool + "+" + l.Size
}

func (l Login) String() string {
	if l.Pool == "" && l.Size == "" {
		return l.User
	}
	return fmt.Sprintf("%s+%s", l.User, l.Where())
}

// SessionSettings returns the pool's session settings, with the defaults
// for a pool stored before it had any.
func (p *Pool) SessionSettings() SessionSpec {
	var s SessionSpec
	if p.Sessions != nil {
		s = *p.Sessions
	} else {
		_ = s.normalize("", p.Node)
	}
	if s.Placement == "" {
		s.Placement = PlacementSpread
		if p.Autoscale != nil {
			s.Placement = PlacementPack
		}
	}
	return s
}

// Session placements.
const (
	PlacementSpread = "spread"
	PlacementPack   = "pack"
)
