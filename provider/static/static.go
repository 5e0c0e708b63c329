// Package static is the provider of pools whose nodes are machines someone
// already runs: each joins by running `dspool agent` with the pool's join
// token and leaves when it stops. dspool neither adds nor removes them, so
// such a pool does not autoscale.
package static

import (
	"context"
	"fmt"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// Provider lists the machines that have joined a pool; it implements
// autoscale.Provider.
type Provider struct {
	// Nodes returns the names and join times of the pool's nodes that are
	// not gone.
	Nodes func(ctx context.Context, pool string) ([]autoscale.Instance, error)
}

var _ autoscale.Provider = (*Provider)(nil)

// Grow always fails with ErrFixed: a machine joins by running an agent.
func (p *Provider) Grow(_ context.Context, req autoscale.GrowRequest) ([]string, error) {
	if req.N() <= 0 {
		return nil, nil
	}
	pool := req.Pool
	return nil, fmt.Errorf("pool %s is static: add a machine by running `dspool agent` on it with a join token from `dspool pool join-token %s`: %w",
		pool.Name, pool.Name, autoscale.ErrFixed)
}

// Remove stops nothing: the machines are not dspool's to stop.
func (p *Provider) Remove(context.Context, *dspool.Pool, []string) error { return nil }

// List returns the pool's joined nodes.
func (p *Provider) List(ctx context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	if p.Nodes == nil {
		return nil, nil
	}
	return p.Nodes(ctx, pool.Name)
}
