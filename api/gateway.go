package api

import "github.com/dspool/dspool"

// The SSH gateway in a process of its own (`dspool gateway`,
// docs/decisions/0019-ssh-gateway-apart.md). It calls the control plane's
// API with a token that has the gateway scope to authenticate logins and to
// open sessions and channels; the bytes of a channel do not pass through the
// control plane: the node's agent dials the gateway (Dial), so that a
// control plane restart leaves open SSH connections alone. The gateway
// reports its connections in a heartbeat, which also takes them up again
// after a restart, and learns from the reply which must end.

// GatewayConfig is the answer of GET /api/v1/gateway/config: what every
// gateway of the pool serves alike.
type GatewayConfig struct {
	// HostKey is the pool's SSH host key (an OpenSSH private key in PEM):
	// every gateway behind a load balancer presents the same.
	HostKey      string          `json:"host_key"`
	Ciphers      []string        `json:"ciphers,omitempty"`
	PasswordAuth bool            `json:"password_auth,omitempty"`
	Heartbeat    dspool.Duration `json:"heartbeat"`
}

// GatewayAuth is the body of POST /api/v1/gateway/auth: a login to check,
// by the fingerprint of the key it proved, or by its password.
type GatewayAuth struct {
	User        string `json:"user"`
	Pool        string `json:"pool,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Password    string `json:"password,omitempty"`
	Remote      string `json:"remote"`
}

// GatewayAuthReply is its answer: the user, and when the login is refused,
// why (User is still set for a disabled user's own key or password, so that
// the gateway can tell them).
type GatewayAuthReply struct {
	User    *dspool.User  `json:"user,omitempty"`
	Refused *dspool.Error `json:"refused,omitempty"`
	// RetryAfter, with Refused, says that password logins of this user or
	// address are throttled for that long.
	RetryAfter dspool.Duration `json:"retry_after,omitempty"`
}

// GatewayOpen is the body of POST /api/v1/gateway/sessions: a connection of
// a gateway, which opens or joins its user's session in Pool. How is how it
// authenticated (a key's fingerprint, or "password"). The answer is a
// stream of GatewayOpenEvent lines (JSON, one per line): progress while the
// session waits for a node, then the session or the error.
type GatewayOpen struct {
	Gateway string `json:"gateway"`
	Conn    string `json:"conn"`
	User    string `json:"user"`
	Pool    string `json:"pool,omitempty"`
	Remote  string `json:"remote"`
	How     string `json:"how"`
}

// GatewayOpenEvent is one line of the answer to GatewayOpen.
type GatewayOpenEvent struct {
	Progress string        `json:"progress,omitempty"`
	Session  *GatewayConn  `json:"session,omitempty"`
	Error    *dspool.Error `json:"error,omitempty"`
}

// GatewayConn is one connection's session.
type GatewayConn struct {
	ID       string `json:"id"`
	Node     string `json:"node"`
	NodeName string `json:"node_name"`
	// Landed is what the login is told of where it landed.
	Landed string `json:"landed,omitempty"`
}

// Dial asks an agent to carry a channel on connections it opens to a
// gateway rather than on its link to the control plane: TLS to Addr, whose
// certificate's public key has Pin, each connection sending Token (upgrade
// GatewayUpgrade, the token in DataTokenHeader, the kind in
// GatewayStreamHeader).
type Dial struct {
	Addr  string `json:"addr"`
	Pin   string `json:"pin"`
	Token string `json:"token"`
}

// The connections an agent opens to a gateway.
const (
	GatewayUpgrade      = "dspool-gateway/1"
	GatewayStreamHeader = "Dspool-Stream"
	GatewayStreamFrames = "frames" // the channel's frames (or a forward's bytes)
	GatewayStreamData   = "data"   // the channel's stdin and stdout
)

// GatewayChannel is the body of POST /api/v1/gateway/channel: start a
// process of the connection's session. The control plane adds the
// session's setup and sends it to the node, which dials Dial for it.
type GatewayChannel struct {
	Gateway string `json:"gateway"`
	Conn    string `json:"conn"`
	// What ChannelRequest says of the process.
	Kind    string            `json:"kind"`
	Command string            `json:"command,omitempty"`
	PTY     *PTY              `json:"pty,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Client  string            `json:"client,omitempty"`
	Server  string            `json:"server,omitempty"`
	Dial    Dial              `json:"dial"`
}

// GatewayForward is the body of POST /api/v1/gateway/forward: connect to
// Host:Port as seen from the connection's node, on a connection the node
// opens to Dial.
type GatewayForward struct {
	Gateway string `json:"gateway"`
	Conn    string `json:"conn"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Dial    Dial   `json:"dial"`
}

// GatewayHeartbeat is the body of POST /api/v1/gateway/heartbeat: every
// connection the gateway holds, with its session and the bytes it moved
// since the last heartbeat that was answered.
type GatewayHeartbeat struct {
	Gateway string                `json:"gateway"`
	Conns   []GatewayConnActivity `json:"conns"`
}

// GatewayConnActivity is one connection in a GatewayHeartbeat.
type GatewayConnActivity struct {
	Conn    string `json:"conn"`
	Session string `json:"session"`
	User    string `json:"user"`
	How     string `json:"how"`
	In      int64  `json:"in,omitempty"`
	Out     int64  `json:"out,omitempty"`
}

// GatewayHeartbeatReply lists the connections that must end, and why.
type GatewayHeartbeatReply struct {
	End []GatewayConnEnd `json:"end,omitempty"`
}

// GatewayConnEnd is a connection that must end.
type GatewayConnEnd struct {
	Conn   string `json:"conn"`
	Reason string `json:"reason"`
	// CredentialGone: only this connection ends, its key or password
	// removed; UserDisabled: its user was disabled.
	CredentialGone bool `json:"credential_gone,omitempty"`
	UserDisabled   bool `json:"user_disabled,omitempty"`
}

// GatewayClose is the body of POST /api/v1/gateway/close: connections that
// ended.
type GatewayClose struct {
	Gateway string   `json:"gateway"`
	Conns   []string `json:"conns"`
}
