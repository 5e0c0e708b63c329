package agent_test

import (
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/dspooltest"
)

// TestAgentsBehindOneAddressJoin: agents that share an address (behind a
// NAT, or `dspool up`'s) keep no connection to the API once they have
// joined, so that more of them join than the server lets one address hold
// connections: their links to the control plane do not count.
func TestAgentsBehindOneAddressJoin(t *testing.T) {
	const limit, agents = 2, 5
	p := dspooltest.New(t, dspooltest.Options{MaxConnsPerSource: limit})
	for range agents {
		p.AddAgent(dspool.DefaultPool, agent.Config{CPUs: 1000, Memory: 1 << 30})
	}
	p.WaitReady(dspool.DefaultPool, agents)
}
