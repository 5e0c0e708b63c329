package autoscale

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// Provider creates and removes the nodes of pools: agent processes on this
// machine, machines someone else runs, Slurm allocations, later pods and
// cloud instances. The control plane's autoscaler loop is its only caller;
// every provider passes the conformance suite in autoscale/providertest.
//
// A provider names the nodes it creates; an agent registers under that name,
// which is how the control plane matches a store's node to a provider's
// instance.
type Provider interface {
	// Grow asks for len(req.Joins) more nodes of req.Pool, one per Join,
	// and returns their names, in the order of the joins it used. It
	// returns once they are asked for, not once they are ready. An error
	// that wraps ErrFixed says the provider never grows pools; an *Error
	// says what the engine refused, in its words; any error is retried
	// with backoff and shown to users as the reason.
	Grow(ctx context.Context, req GrowRequest) ([]string, error)
	// Remove removes the named nodes of pool, which the control plane has
	// already drained. Removing a node that is not there is not an error.
	Remove(ctx context.Context, pool *dspool.Pool, names []string) error
	// List returns the pool's nodes that the provider has now: asked for,
	// booting, running, or failed to start (with why). The control plane
	// calls it through Cache, never faster than the provider's ListPolicy.
	List(ctx context.Context, pool *dspool.Pool) ([]Instance, error)
}

// GrowRequest is what Grow needs: the pool and, for each machine to ask
// for, what it needs to join the pool.
type GrowRequest struct {
	Pool  *dspool.Pool
	Joins []Join
}

// N is how many nodes are asked for.
func (r GrowRequest) N() int { return len(r.Joins) }

// Join is what one new machine needs to join its pool: the control plane's
// address, the pin of its CA (so the agent trusts it on first contact) and
// a join token that joins one node, once, until Expires. The token must
// reach the agent outside its command line (an environment variable, a
// file of mode 0600): a command line is every local user's to read.
type Join struct {
	Server  string
	CAPin   string
	Token   string // carries the pin after the secret: api.JoinTokenWithPin
	Expires time.Time
}

// InstanceState is where an instance stands, as its provider sees it.
type InstanceState string

const (
	// InstanceCreating: asked for, not running yet (queued, booting).
	InstanceCreating InstanceState = "creating"
	// InstanceRunning: the machine runs (its agent may still be joining).
	InstanceRunning InstanceState = "running"
	// InstanceFailed: it ended, or cannot start, without its node ever
	// joining; Err says why. It counts as nothing and is not asked for
	// again until the pool's backoff passes.
	InstanceFailed InstanceState = "failed"
)

// Instance is one node as its provider knows it.
type Instance struct {
	Name    string
	Created time.Time
	// State is "" where the provider does not tell (counted as running).
	State InstanceState
	// Err says, in the engine's words, why a creating instance waits (a
	// queue's pending reason) or why a failed one failed.
	Err *Error
}

// ErrFixed is wrapped by Grow of providers whose pools are a fixed set of
// machines (static): nodes join and leave by themselves.
var ErrFixed = errors.New("this provider does not add nodes")

// ErrStopping is what Grow returns once the provider is being stopped, with
// the control plane: not a failure to report.
var ErrStopping = errors.New("the provider is stopping")

// Class is what kind of failure a provider met, as cluster-autoscaler
// classes them: it decides how the failure is told and how long the pool
// backs off.
type Class string

const (
	// ClassQuota: the account, project or QOS may not have more.
	ClassQuota Class = "quota"
	// ClassCapacity: the engine has no room now; it may later.
	ClassCapacity Class = "capacity"
	// ClassImage: what the machine should run is not there (an image, the
	// dspool binary on a node).
	ClassImage Class = "image"
	// ClassUnschedulable: nothing the engine has can ever satisfy the
	// request (no such partition, node too big for any machine).
	ClassUnschedulable Class = "unschedulable"
	// ClassOther: anything else (the engine unreachable, a timeout).
	ClassOther Class = "other"
)

// Error is a failure an engine reported, kept in its own words.
type Error struct {
	Class Class
	// Engine names the engine ("slurm"); Message is what it said.
	Engine  string
	Message string
	Err     error // the underlying error, if any
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%s): %s", e.Engine, e.Class, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of the *Error in err's chain, ClassOther for
// any other error and "" for nil.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Class != "" {
		return e.Class
	}
	return ClassOther
}

// Backoff is how long a pool waits before asking its provider again after
// failures in a row of class c: doubling from 5 s to 5 min, from a minute
// for what will not mend by itself soon (quota, an image, a request that
// nothing can satisfy).
func Backoff(c Class, failures int) time.Duration {
	first := 5 * time.Second
	switch c {
	case ClassQuota, ClassImage, ClassUnschedulable:
		first = time.Minute
	}
	return min(first<<min(max(failures-1, 0), 8), 5*time.Minute)
}
