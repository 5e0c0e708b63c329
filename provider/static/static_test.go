package static

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/autoscale/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		var mu sync.Mutex
		joined := map[string][]autoscale.Instance{}
		p := &Provider{Nodes: func(_ context.Context, pool string) ([]autoscale.Instance, error) {
			mu.Lock()
			defer mu.Unlock()
			return append([]autoscale.Instance(nil), joined[pool]...), nil
		}}
		return &providertest.Harness{Provider: p, Fixed: true,
			Pool:  &dspool.Pool{Name: "lab", Provider: dspool.Provider(dspool.ProviderStatic)},
			Other: &dspool.Pool{Name: "lab2", Provider: dspool.Provider(dspool.ProviderStatic)},
			Join: func(t *testing.T, pool *dspool.Pool, name string) {
				mu.Lock()
				joined[pool.Name] = append(joined[pool.Name], autoscale.Instance{Name: name, Created: time.Now()})
				mu.Unlock()
			}}
	})
}
