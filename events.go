package dspool

import "time"

// PoolEvent is one thing that happened to a pool that its users and admins
// may want to know later: a scaling decision, a node removed, a provider
// failing, work waiting for a node. Events are kept per pool, newest last.
type PoolEvent struct {
	ID      int64     `json:"id"`
	Pool    string    `json:"pool"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Nodes   []string  `json:"nodes,omitempty"`
	Message string    `json:"message"`
}

// Kinds of pool events.
const (
	EventScaleOut      = "scale_out"      // nodes were asked for
	EventScaleIn       = "scale_in"       // idle nodes were chosen for removal
	EventRemove        = "node_removed"   // nodes left the pool
	EventProviderError = "provider_error" // the provider failed to add or remove nodes
	EventWaiting       = "waiting"        // work waits for a node that is not there yet
	EventPolicy        = "policy"         // the pool's policy changed or limited a decision
	EventNodeRevoked   = "node_revoked"   // an admin revoked a node's credential
	EventDrain         = "node_draining"  // an admin drained a node: it takes no new work
	EventUndrain       = "node_undrained" // an admin let a drained node take work again
	EventLeft          = "node_left"      // a node's agent stopped on purpose: the node left at once
	EventGone          = "node_gone"      // a node stayed lost past node_gone_after
	EventReturned      = "node_returned"  // a node that had left or gone connected again
	EventPoolDeleted   = "pool_deleted"   // an admin deleted the pool
	EventJoinToken     = "join_token"     // a join token was created or revoked
)

// MaxPoolEvents is how many events a pool keeps; older ones are dropped.
const MaxPoolEvents = 10000
