package dspooltest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/autoscale"
)

// Provider is an autoscale.Provider whose nodes are in-process agents of
// the pool, sized as their pool says: tests of the autoscaler use it as
// the local provider.
type Provider struct {
	p       *Pool
	mu      sync.Mutex
	next    int
	agents  map[string]*provided
	grows   int
	removes int
	fail    error
	listErr error
}

// Fail makes Grow fail with err until it is called again with nil, as a
// provider out of quota would.
func (pr *Provider) Fail(err error) {
	pr.mu.Lock()
	pr.fail = err
	pr.mu.Unlock()
}

// FailList makes List fail with err until it is called again with nil, as
// an engine that cannot be reached would.
func (pr *Provider) FailList(err error) {
	pr.mu.Lock()
	pr.listErr = err
	pr.mu.Unlock()
}

type provided struct {
	pool    string
	agent   *Agent
	created time.Time
}

var _ autoscale.Provider = (*Provider)(nil)

// UseProvider makes a Provider create and remove the nodes of pools whose
// provider is local, and returns it.
func (p *Pool) UseProvider() *Provider {
	prov := &Provider{p: p, agents: map[string]*provided{}}
	p.Server.UseProvider(dspool.ProviderLocal, prov)
	return prov
}

// Grow starts n agents in pool.
func (pr *Provider) Grow(_ context.Context, req autoscale.GrowRequest) ([]string, error) {
	pool, n := req.Pool, req.N()
	var names []string
	for i := 0; i < n; i++ {
		pr.mu.Lock()
		if err := pr.fail; err != nil {
			pr.mu.Unlock()
			return names, err
		}
		pr.next++
		name := fmt.Sprintf("%s-p%d", pool.Name, pr.next)
		pr.grows++
		pr.mu.Unlock()
		// Stopped, it stays as a local agent of `dspool up` does: the provider
		// removes it.
		a, err := pr.p.addAgent(pool.Name, agent.Config{Name: name, CPUs: pool.Node.CPUs, Memory: pool.Node.Memory, GPUs: pool.Node.GPUs,
			StayOnStop: true})
		if err != nil {
			return names, err
		}
		pr.mu.Lock()
		pr.agents[name] = &provided{pool: pool.Name, agent: a, created: time.Now()}
		pr.mu.Unlock()
		names = append(names, name)
	}
	return names, nil
}

// Remove stops the named agents.
func (pr *Provider) Remove(_ context.Context, pool *dspool.Pool, names []string) error {
	for _, name := range names {
		pr.mu.Lock()
		a := pr.agents[name]
		if a != nil && a.pool == pool.Name {
			delete(pr.agents, name)
			pr.removes++
		}
		pr.mu.Unlock()
		if a != nil && a.pool == pool.Name {
			a.agent.Stop()
		}
	}
	return nil
}

// List returns the pool's agents.
func (pr *Provider) List(_ context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.listErr != nil {
		return nil, pr.listErr
	}
	var out []autoscale.Instance
	for name, a := range pr.agents {
		if a.pool == pool.Name {
			out = append(out, autoscale.Instance{Name: name, Created: a.created})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Counts returns how many nodes were asked for and removed so far.
func (pr *Provider) Counts() (grown, removed int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.grows, pr.removes
}
