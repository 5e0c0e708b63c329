package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/dspool/dspool"
)

// checkGPUWant refuses a job that asks for GPUs of a model or memory that
// no node of its pool has. A pool with no node that describes its GPUs
// yet (scaled to zero, or not joined) takes the job: it waits, and says
// why while no node has them (gpuWaiting).
func (s *Server) checkGPUWant(ctx context.Context, pool string, gpus int, w dspool.GPUWant) error {
	if w.Any() || gpus == 0 {
		return nil
	}
	nodes, err := s.db.Nodes(ctx, pool, false)
	if err != nil {
		return err
	}
	var all []dspool.GPU
	for _, n := range nodes {
		if w.CountFits(n.Inventory.GPUs) >= gpus {
			return nil
		}
		all = append(all, n.Inventory.GPUs...)
	}
	if len(all) == 0 {
		return nil
	}
	field := "gpu_type"
	if w.Type == "" || (dspool.GPUWant{Type: w.Type}).CountFits(all) > 0 {
		field = "gpu_memory"
	}
	return dspool.Invalid(field, "no node of pool %s has %s %s; its nodes have %s: ask for a model and memory they have, or submit to another pool",
		pool, dspool.Plural(gpus, "GPU"), w, strings.Join(dspool.GPUModels(all), ", "))
}

// gpuWaiting says why a queued job that asks for a GPU model or memory
// waits when no ready node of its pool has enough such GPUs at all (not
// merely free), or "" when one has.
func (s *Server) gpuWaiting(j *dspool.Job) string {
	w := dspool.GPUWant{Type: j.GPUType, Memory: j.GPUMemory}
	if w.Any() || j.GPUs == 0 {
		return ""
	}
	var all []dspool.GPU
	for _, n := range s.hub.ready() {
		if n.pool != j.Pool {
			continue
		}
		if w.CountFits(n.inv.GPUs) >= j.GPUs {
			return ""
		}
		all = append(all, n.inv.GPUs...)
	}
	have := "no ready node"
	if len(all) > 0 {
		have = "ready nodes have " + strings.Join(dspool.GPUModels(all), ", ")
	}
	return fmt.Sprintf("no ready node of pool %s has %s %s (%s)", j.Pool, dspool.Plural(j.GPUs, "GPU"), w, have)
}

// describeGPUs fills a job's GPUsHeld from its node's inventory as the
// store last had it.
func (s *Server) describeGPUs(ctx context.Context, j *dspool.Job) {
	if len(j.GPUIndices) == 0 || j.Node == "" {
		return
	}
	n, err := s.db.Node(ctx, j.Node)
	if err != nil {
		return
	}
	for _, idx := range j.GPUIndices {
		for _, g := range n.Inventory.GPUs {
			if g.Index == idx {
				j.GPUsHeld = append(j.GPUsHeld, g)
			}
		}
		if j.State == dspool.JobRunning && s.hub.gpusBusy(j.Node, []int{idx}) {
			j.GPUsBusy = append(j.GPUsBusy, idx)
		}
	}
}
