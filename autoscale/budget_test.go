package autoscale_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

func TestBudgetsCap(t *testing.T) {
	size := dspool.NodeSize{CPUs: 4000, Memory: 16 << 30, GPUs: 2}
	job := func(cpus dspool.MilliCPU, gpus int, owners ...string) autoscale.Demand {
		return autoscale.Demand{Kind: autoscale.KindJob, CPUs: cpus, Memory: 1 << 30, GPUs: gpus, Owners: owners}
	}
	tests := []struct {
		name      string
		budgets   autoscale.Budgets
		waiting   []autoscale.Demand
		kept      int // how many are kept
		capped    []autoscale.Capped
		remaining autoscale.Budgets
	}{{
		name:      "work without a budget passes",
		budgets:   autoscale.Budgets{"team vision": 0},
		waiting:   []autoscale.Demand{job(4000, 2, "team nlp"), job(4000, 2)},
		kept:      2,
		remaining: autoscale.Budgets{"team vision": 0},
	}, {
		name:    "a team's work fills its budget of nodes, largest first",
		budgets: autoscale.Budgets{"team vision": 2},
		// Three 2-gpu jobs and two 1-gpu jobs need four nodes; two may come,
		// and the largest take them.
		waiting:   []autoscale.Demand{job(1000, 1, "team vision"), job(1000, 2, "team vision"), job(1000, 2, "team vision"), job(1000, 2, "team vision"), job(1000, 1, "team vision")},
		kept:      2,
		capped:    []autoscale.Capped{{Index: 0, Owner: "team vision"}, {Index: 3, Owner: "team vision"}, {Index: 4, Owner: "team vision"}},
		remaining: autoscale.Budgets{"team vision": 0},
	}, {
		name:      "small work shares the owner's nodes",
		budgets:   autoscale.Budgets{"team vision": 1},
		waiting:   []autoscale.Demand{job(1000, 0, "team vision"), job(1000, 0, "team vision"), job(2000, 0, "team vision"), job(1000, 0, "team vision")},
		kept:      3,
		capped:    []autoscale.Capped{{Index: 3, Owner: "team vision"}},
		remaining: autoscale.Budgets{"team vision": 0},
	}, {
		name:      "the user's budget binds even when the team's has room, and spends nothing of the team's",
		budgets:   autoscale.Budgets{"team vision": 5, "user ann": 1},
		waiting:   []autoscale.Demand{job(4000, 0, "team vision", "user ann"), job(4000, 0, "team vision", "user ann"), job(4000, 0, "team vision", "user bob")},
		kept:      2,
		capped:    []autoscale.Capped{{Index: 1, Owner: "user ann"}},
		remaining: autoscale.Budgets{"team vision": 3, "user ann": 0},
	}, {
		name:      "work no node can hold is left to Decide",
		budgets:   autoscale.Budgets{"team vision": 0},
		waiting:   []autoscale.Demand{job(8000, 0, "team vision")},
		kept:      1,
		remaining: autoscale.Budgets{"team vision": 0},
	}, {
		name:      "a spent budget keeps everything out",
		budgets:   autoscale.Budgets{"team vision": -1},
		waiting:   []autoscale.Demand{job(500, 0, "team vision")},
		kept:      0,
		capped:    []autoscale.Capped{{Index: 0, Owner: "team vision"}},
		remaining: autoscale.Budgets{"team vision": -1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept, capped := tt.budgets.Cap(size, tt.waiting)
			if len(kept) != tt.kept {
				t.Errorf("kept %d pieces of work, want %d: %+v", len(kept), tt.kept, kept)
			}
			if !reflect.DeepEqual(capped, tt.capped) {
				t.Errorf("capped:\ngot  %+v\nwant %+v", capped, tt.capped)
			}
			if !reflect.DeepEqual(tt.budgets, tt.remaining) {
				t.Errorf("budgets left: got %v, want %v", tt.budgets, tt.remaining)
			}
		})
	}
}

// TestCapBoundsWhatDecideAdds: twenty jobs of a team that may have three
// nodes added bring three nodes to an empty pool, not twenty.
func TestCapBoundsWhatDecideAdds(t *testing.T) {
	pool := &dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 4000, Memory: 16 << 30, GPUs: 1},
		Autoscale: &dspool.Autoscale{Max: 50, IdleTimeout: dspool.Duration(600e9), BootTimeout: dspool.Duration(600e9)}}
	var waiting []autoscale.Demand
	for i := 0; i < 20; i++ {
		waiting = append(waiting, autoscale.Demand{Kind: autoscale.KindJob, CPUs: 1000, Memory: 1 << 30, GPUs: 1, Owners: []string{"team vision"}})
	}
	kept, _ := autoscale.Budgets{"team vision": 3}.Cap(pool.Node, waiting)
	d := autoscale.Decide(&autoscale.State{Pool: pool, Waiting: kept}, time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	if d.Add != 3 {
		t.Fatalf("Decide adds %d nodes, want 3 (%s)", d.Add, d.AddReason)
	}
}
