package autoscale

import (
	"context"
	"errors"
	"time"

	"github.com/dspool/dspool"
)

// Provider creates and removes the nodes of pools: agent processes on this
// machine, machines someone else runs, later pods and cloud instances. The
// control plane's autoscaler loop is its only caller; every provider passes
// the conformance suite in autoscale/providertest.
//
// A provider names the nodes it creates; an agent registers under that name,
// which is how the control plane matches a store's node to a provider's
// instance.
type Provider interface {
	// Grow asks for n more nodes of pool and returns their names. It
	// returns once they are asked for, not once they are ready. An error
	// that wraps ErrFixed says the provider never grows pools; any other
	// error is retried with backoff and shown to users as the reason.
	Grow(ctx context.Context, pool *dspool.Pool, n int) ([]string, error)
	// Remove removes the named nodes of pool, which the control plane has
	// already drained. Removing a node that is not there is not an error.
	Remove(ctx context.Context, pool *dspool.Pool, names []string) error
	// List returns the pool's nodes that the provider has now, booting or
	// running.
	List(ctx context.Context, pool *dspool.Pool) ([]Instance, error)
}

// Instance is one node as its provider knows it.
type Instance struct {
	Name    string
	Created time.Time
}

// ErrFixed is wrapped by Grow of providers whose pools are a fixed set of
// machines (static): nodes join and leave by themselves.
var ErrFixed = errors.New("this provider does not add nodes")

// ErrStopping is what Grow returns once the provider is being stopped, with
// the control plane: not a failure to report.
var ErrStopping = errors.New("the provider is stopping")
