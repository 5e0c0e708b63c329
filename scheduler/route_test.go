package scheduler

import (
	"testing"

	"github.com/dspool/dspool"
)

func TestRoute(t *testing.T) {
	const G = dspool.Bytes(1 << 30)
	n := func(id string, cpus dspool.MilliCPU, mem dspool.Bytes, sessions int) SessionNode {
		return SessionNode{Node: Node{ID: id, CPUs: 4000, Memory: 16 * G, FreeCPUs: cpus, FreeMem: mem}, Sessions: sessions}
	}
	cases := []struct {
		name     string
		nodes    []SessionNode
		affinity string
		cpus     dspool.MilliCPU
		mem      dspool.Bytes
		want     string
		joined   bool
		ok       bool
		pack     bool
	}{
		{"no nodes", nil, "", 1000, 2 * G, "", false, false, false},
		{"least loaded by cpus", []SessionNode{n("a", 1000, 8*G, 0), n("b", 3000, 8*G, 2), n("c", 2000, 8*G, 0)}, "", 1000, 2 * G, "b", false, true, false},
		{"ties on cpus go to free memory", []SessionNode{n("a", 2000, 4*G, 0), n("b", 2000, 8*G, 1)}, "", 1000, 2 * G, "b", false, true, false},
		{"ties on cpus and memory go to fewer sessions", []SessionNode{n("a", 2000, 8*G, 3), n("b", 2000, 8*G, 1)}, "", 1000, 2 * G, "b", false, true, false},
		{"full tie goes to the lowest id", []SessionNode{n("b", 2000, 8*G, 1), n("a", 2000, 8*G, 1)}, "", 1000, 2 * G, "a", false, true, false},
		{"a node without room for the reservation is skipped", []SessionNode{n("a", 4000, 1*G, 0), n("b", 1000, 2*G, 0)}, "", 1000, 2 * G, "b", false, true, false},
		{"no node has room", []SessionNode{n("a", 500, 8*G, 0), n("b", 4000, 1*G, 0)}, "", 1000, 2 * G, "", false, false, false},
		{"affinity wins over load", []SessionNode{n("a", 0, 0, 4), n("b", 4000, 16*G, 0)}, "a", 1000, 2 * G, "a", true, true, false},
		{"affinity needs no room of its own", []SessionNode{n("a", 0, 0, 1)}, "a", 1000, 2 * G, "a", true, true, false},
		{"affinity to a node that is gone falls back to load", []SessionNode{n("a", 1000, 8*G, 0), n("b", 3000, 8*G, 0)}, "z", 1000, 2 * G, "b", false, true, false},
		{"negative reservation is never routed", []SessionNode{n("a", 1000, 8*G, 0)}, "", -1, 2 * G, "", false, false, false},
		{"pack: most used by cpus", []SessionNode{n("a", 1000, 8*G, 0), n("b", 3000, 8*G, 2), n("c", 2000, 8*G, 0)}, "", 1000, 2 * G, "a", false, true, true},
		{"pack: ties on cpus go to less free memory", []SessionNode{n("a", 2000, 4*G, 0), n("b", 2000, 8*G, 1)}, "", 1000, 2 * G, "a", false, true, true},
		{"pack: ties on cpus and memory go to more sessions", []SessionNode{n("a", 2000, 8*G, 3), n("b", 2000, 8*G, 1)}, "", 1000, 2 * G, "a", false, true, true},
		{"pack: a full node is skipped", []SessionNode{n("a", 500, 8*G, 0), n("b", 4000, 16*G, 0)}, "", 1000, 2 * G, "b", false, true, true},
		{"pack: affinity still wins", []SessionNode{n("a", 1000, 8*G, 0), n("b", 4000, 16*G, 0)}, "b", 1000, 2 * G, "b", true, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			placement := dspool.PlacementSpread
			if c.pack {
				placement = dspool.PlacementPack
			}
			got, joined, ok := Route(c.nodes, c.affinity, c.cpus, c.mem, placement)
			if got != c.want || joined != c.joined || ok != c.ok {
				t.Fatalf("Route = %q, joined %v, ok %v; want %q, %v, %v", got, joined, ok, c.want, c.joined, c.ok)
			}
		})
	}
}

func BenchmarkRoute(b *testing.B) {
	nodes := make([]SessionNode, 1000)
	for i := range nodes {
		nodes[i] = SessionNode{Node: Node{ID: string(rune('a'+i%26)) + string(rune('a'+i/26%26)), FreeCPUs: dspool.MilliCPU(i % 8 * 1000), FreeMem: dspool.Bytes(i%16) << 30}, Sessions: i % 5}
	}
	for b.Loop() {
		Route(nodes, "", 1000, 2<<30, dspool.PlacementSpread)
	}
}
