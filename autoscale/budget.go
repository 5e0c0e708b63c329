package autoscale

import (
	"cmp"
	"slices"

	"github.com/dspool/dspool"
)

// Budgets are how many more nodes autoscaling may add for the work of each
// owner that has a node limit (a team or a user, by a key of the caller's,
// such as "team vision"): the limit less the nodes its running work and
// sessions are on now. Owners not listed have no limit.
type Budgets map[string]int

// Capped is waiting work that Cap kept out of the demand, and the owner
// whose budget it did not fit.
type Capped struct {
	Index int // into the waiting work given to Cap
	Owner string
}

// Cap returns the waiting work of one pool that may count as demand, in
// its order, and the rest. Work whose owners all have no budget passes as
// it is. The rest is counted, for each owner with a budget, the way Decide
// counts new nodes: largest first, each piece into the first of the owner's
// nodes it fits or, while the owner's budget lasts, into a new node of
// size, which spends one node of the budget. Work that finds no room with
// one of its owners is kept out, and spends nothing.
//
// It is an approximation of "nodes added for an owner": the nodes are
// counted as though the owner's work were alone in the pool, so room that
// exists, or that other work leaves, is not credited. Cap spends b, so one
// Budgets carries an owner's nodes across the pools of a pass.
func (b Budgets) Cap(size dspool.NodeSize, waiting []Demand) (kept []Demand, capped []Capped) {
	order := make([]int, len(waiting))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return largestFirst(&waiting[x], &waiting[y]) })
	bins := map[string][]bin{}
	out := make([]bool, len(waiting))
	for _, i := range order {
		w := &waiting[i]
		if w.CPUs > size.CPUs || w.Memory > size.Memory || w.GPUs > size.GPUs {
			continue // no node holds it: Decide says so
		}
		// Find room with every owner first, then take it, so that work
		// refused by one owner spends nothing of another's.
		at := make([]int, len(w.Owners))
		blocked := ""
		for k, o := range w.Owners {
			left, limited := b[o]
			if !limited {
				at[k] = -2
				continue
			}
			at[k] = slices.IndexFunc(bins[o], func(x bin) bool { return x.fits(w) })
			if at[k] < 0 && left <= 0 {
				blocked = o
				break
			}
		}
		if blocked != "" {
			out[i] = true
			capped = append(capped, Capped{Index: i, Owner: blocked})
			continue
		}
		for k, o := range w.Owners {
			switch at[k] {
			case -2:
			case -1:
				b[o]--
				nb := bin{size.CPUs, size.Memory, size.GPUs, -1}
				nb.take(w)
				bins[o] = append(bins[o], nb)
			default:
				bins[o][at[k]].take(w)
			}
		}
	}
	for i := range waiting {
		if !out[i] {
			kept = append(kept, waiting[i])
		}
	}
	slices.SortFunc(capped, func(x, y Capped) int { return cmp.Compare(x.Index, y.Index) })
	return kept, capped
}

func (b *bin) fits(d *Demand) bool {
	return d.CPUs <= b.cpus && d.Memory <= b.mem && d.GPUs <= b.gpus
}

// largestFirst orders waiting work as Decide packs it: most GPUs, then most
// cpus, then most memory.
func largestFirst(x, y *Demand) int {
	if c := cmp.Compare(y.GPUs, x.GPUs); c != 0 {
		return c
	}
	if c := cmp.Compare(y.CPUs, x.CPUs); c != 0 {
		return c
	}
	return cmp.Compare(y.Memory, x.Memory)
}
