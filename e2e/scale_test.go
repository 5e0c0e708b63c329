package e2e_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestLocalPoolShrinks: lowering a local pool's count stops the surplus
// agent and retires its node (gone, not lost), and raising it again brings
// a node back.
func TestLocalPoolShrinks(t *testing.T) {
	up := startUp(t, upConfig{Nodes: 2, UIDBase: uidBase(10)})
	var d api.PoolDetail
	cliJSON(t, up.env(), &d, "pool", "show", "default")
	apply := func(count int) {
		spec := fmt.Sprintf("name: default\nprovider: local\nnode: {cpus: %s, memory: %d}\ncount: %d\n", d.Node.CPUs, int64(d.Node.Memory), count)
		cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pool-*.yaml", spec))
	}
	apply(1)
	eventually(t, 20*time.Second, "one node left in the pool", func() bool {
		out, _, code := cli(t, up.env(), "node", "list", "-o", "json")
		var nodes []*dspool.Node
		if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil {
			return false
		}
		return len(nodes) == 1 && nodes[0].Name == "default-1" && nodes[0].State == dspool.NodeReady
	})
	apply(2)
	up.waitNodes(t, "default", 2)
}
