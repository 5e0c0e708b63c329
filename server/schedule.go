package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/store"
)

func (s *Server) scheduleLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		if err := s.schedule(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduling pass", "err", err)
		}
	}
}

// schedule runs one pass: snapshot the queue and the ready nodes, plan,
// commit the placements in one transaction, then push them to the agents.
func (s *Server) schedule(ctx context.Context) error {
	began := time.Now()
	if len(s.hub.ready()) == 0 {
		s.setHeadroom(map[string]headroom{})
		return nil
	}
	s.setHeadroom(nil) // unknown while the pass runs
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	active, err := s.db.ActiveJobs(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(active, func(j store.ActiveJob) bool { return j.State == dspool.JobQueued }) {
		return nil
	}
	attempts := map[int64]int{}
	for _, j := range active {
		attempts[j.ID] = j.Attempt
	}
	nodes, err := s.snapshotNodes(ctx, active)
	if err != nil || len(nodes) == 0 {
		return err
	}
	why, err := s.closeNodes(ctx, nodes)
	if err != nil {
		return err
	}
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return err
	}
	st, err := s.standing(ctx, dir, active, s.cfg.Now())
	if err != nil {
		return err
	}
	queued := s.queued(active, st)
	s.addPreemptible(ctx, nodes, active, st)
	// Jobs held by a limit are explained by the autoscaler's pass, which
	// runs whether or not there are nodes.
	res := scheduler.Schedule(nodes, queued, s.quotas(dir, active), false)
	plan := res.Placements
	s.evict(ctx, res, active)
	s.closed.set(queued, plan, why)
	s.setHeadroom(headroomAfter(nodes, queued, plan))
	if len(plan) == 0 {
		return nil
	}
	ps := make([]store.Placement, len(plan))
	for i, p := range plan {
		ps[i] = store.Placement{Job: p.Job, Attempt: attempts[p.Job], Node: p.Node, GPUs: p.GPUs}
	}
	marks := s.hub.pushMarks(ps)
	placed, err := s.db.Place(ctx, ps)
	if err != nil {
		return err
	}
	s.metrics.schedule.Observe(time.Since(began).Seconds())
	s.metrics.placed.Add(float64(len(placed)))
	for _, j := range placed {
		if at, ok := s.preempts.placed(j.ID); ok {
			s.metrics.preemption.Observe(s.cfg.Now().Sub(at).Seconds())
			s.log.Info("placed after preemption", "job", j.ID, "node", j.Node, "after", s.cfg.Now().Sub(at))
		}
		s.notify(j.ID)
		go s.hub.start(j, marks[j.Node])
	}
	return nil
}

// headroom is the most of each resource that any one node of a pool had
// free after the last scheduling pass: a job asking for more in any
// dimension cannot be placed until capacity is freed (which starts a pass of
// its own), so submitting it need not start one.
type headroom struct {
	cpus dspool.MilliCPU
	mem  dspool.Bytes
	gpus int
	// preempt: the pool runs preemptible work, which a new job may evict:
	// every submission starts a pass.
	preempt bool
}

func headroomAfter(nodes []scheduler.Node, jobs []scheduler.Job, plan []scheduler.Placement) map[string]headroom {
	size := make(map[int64]*scheduler.Job, len(plan))
	for i := range jobs {
		size[jobs[i].ID] = &jobs[i]
	}
	type free struct {
		cpus dspool.MilliCPU
		mem  dspool.Bytes
		gpus int
	}
	left := make(map[string]*free, len(nodes))
	for _, n := range nodes {
		left[n.ID] = &free{n.FreeCPUs, n.FreeMem, len(n.FreeGPUs)}
	}
	for _, p := range plan {
		if f, j := left[p.Node], size[p.Job]; f != nil && j != nil {
			f.cpus -= j.CPUs
			f.mem -= j.Memory
			f.gpus -= len(p.GPUs)
		}
	}
	out := map[string]headroom{}
	for _, n := range nodes {
		h, f := out[n.Pool], left[n.ID]
		h.cpus, h.mem, h.gpus = max(h.cpus, f.cpus), max(h.mem, f.mem), max(h.gpus, f.gpus)
		h.preempt = h.preempt || len(n.Running) > 0
		out[n.Pool] = h
	}
	return out
}

// setHeadroom publishes the headroom of the last pass (nil: unknown). A
// submission that was not kicked because of stale headroom is kicked now if
// the new headroom has room.
func (s *Server) setHeadroom(h map[string]headroom) {
	s.hmu.Lock()
	s.headroom = h
	kick := false
	if s.skipped && h != nil {
		for _, x := range h {
			if x.cpus > 0 {
				kick = true
			}
		}
		if kick {
			s.skipped = false
		}
	}
	s.hmu.Unlock()
	if kick {
		s.Kick()
	}
}

// submitted starts a scheduling pass for a new job unless the last pass
// showed no node of its pool with room for it.
func (s *Server) submitted(pool string, cpus dspool.MilliCPU, mem dspool.Bytes, gpus int) {
	s.hmu.Lock()
	h, known := s.headroom[pool]
	fits := s.headroom == nil || known && (h.preempt || cpus <= h.cpus && mem <= h.mem && gpus <= h.gpus)
	if !fits {
		s.skipped = true
	}
	s.hmu.Unlock()
	if fits {
		s.Kick()
	} else {
		s.scaler.kick() // no room now: the autoscaler may add a node
	}
}

// snapshotNodes returns the ready nodes of pools that take batch work, with
// what running attempts leave free on them.
func (s *Server) snapshotNodes(ctx context.Context, active []store.ActiveJob) ([]scheduler.Node, error) {
	ready := s.hub.ready()
	byID := map[string]*scheduler.Node{}
	var ids []string
	for id, ac := range ready {
		p, err := s.hub.pool(ctx, ac.pool)
		if err != nil {
			continue
		}
		if !p.Takes(dspool.WorkBatch) {
			continue
		}
		inv := ac.inv
		n := &scheduler.Node{ID: id, Pool: ac.pool, CPUs: inv.CPUs, Memory: inv.Memory, FreeCPUs: inv.CPUs, FreeMem: inv.Memory}
		for _, g := range inv.GPUs {
			n.FreeGPUs = append(n.FreeGPUs, g.Index)
		}
		n.GPUs = inv.GPUs
		byID[id] = n
		ids = append(ids, id)
	}
	for id, r := range s.sessions.reserved() {
		if n := byID[id]; n != nil {
			n.FreeCPUs -= r.CPUs
			n.FreeMem -= r.Memory
			n.FreeGPUs = slices.DeleteFunc(n.FreeGPUs, func(g int) bool { return slices.Contains(r.GPUs, g) })
		}
	}
	now := s.cfg.Now()
	for _, j := range active {
		n := byID[j.Node]
		if n == nil || j.State != dspool.JobRunning {
			continue
		}
		if r, ok := s.release(j, now); ok {
			n.Releases = append(n.Releases, r)
		}
		n.FreeCPUs -= j.CPUs
		n.FreeMem -= j.Memory
		for _, g := range j.GPUIndices {
			for i, f := range n.FreeGPUs {
				if f == g {
					n.FreeGPUs = append(n.FreeGPUs[:i], n.FreeGPUs[i+1:]...)
					break
				}
			}
		}
	}
	sort.Strings(ids)
	out := make([]scheduler.Node, 0, len(ids))
	for _, id := range ids {
		out = append(out, *byID[id])
	}
	return out, nil
}

// lastContact returns when node n was last heard from (never before it
// registered), and whether it is connected now.
func (s *Server) lastContact(n *dspool.Node) (time.Time, bool) {
	last, connected := s.hub.lastSeen(n.ID)
	return later(last, n.CreatedAt), connected
}

// lostAfter is how long a node must be silent before it is lost and its
// attempts are retried elsewhere: the node grace, after which the node's
// agent stops them itself if it is cut off (it counts from sending its last
// heartbeat that was answered, which is before the server heard it), plus
// the kill grace it gives them to stop, plus a margin for its timers and
// the kernel (docs/decisions/0014-an-attempt-never-runs-beside-its-retry.md).
func (s *Server) lostAfter() time.Duration {
	return s.cfg.NodeGrace + s.cfg.KillGrace + FenceMargin(s.cfg.NodeGrace)
}

// FenceMargin is what the server waits, beyond the node grace and the kill
// grace, before it retries the attempts of a silent node: a tenth of the
// grace, at least a second.
func FenceMargin(grace time.Duration) time.Duration { return max(grace/10, time.Second) }

// monitorLoop marks nodes lost when they have been silent for lostAfter,
// and requeues their attempts; lost ones go after NodeGoneAfter.
func (s *Server) monitorLoop(ctx context.Context) {
	every := s.cfg.NodeGrace / 4
	if every > time.Second {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var suspectSince time.Time
	// handled remembers the last contact of failed nodes already dealt with:
	// a failed node keeps its state, but its attempts still end when it goes
	// silent, once.
	handled := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nodes, err := s.db.Nodes(ctx, "", false)
		if err != nil {
			s.log.Error("node monitor", "err", err)
			continue
		}
		now := s.cfg.Now()
		s.goneAfterLost(ctx, nodes, now)
		var silent []*dspool.Node
		live := 0
		for _, n := range nodes {
			if n.State == dspool.NodeLost {
				continue
			}
			last, connected := s.lastContact(n)
			if n.State == dspool.NodeFailed {
				if !connected && now.Sub(last) > s.lostAfter() && !handled[n.ID].Equal(last) {
					handled[n.ID] = last
					silent = append(silent, n)
				}
				continue
			}
			live++
			if !connected && now.Sub(last) > s.lostAfter() {
				silent = append(silent, n)
			}
		}
		// When most of the fleet goes silent at once, the likelier fault is
		// this server's network: hold off requeueing everything for a while.
		if len(silent) >= 3 && len(silent)*2 > live {
			if suspectSince.IsZero() {
				suspectSince = now
				s.log.Error("most nodes went silent at once: suspecting this server's network, not requeueing yet", "silent", len(silent), "nodes", live)
			}
			if now.Sub(suspectSince) < 4*s.cfg.NodeGrace {
				continue
			}
		} else {
			suspectSince = time.Time{}
		}
		for _, n := range silent {
			msg := fmt.Sprintf("no heartbeat for %s: the node grace (%s), in which its agent stops its attempts if it is cut off, and the kill grace (%s) and a margin for them to stop",
				s.lostAfter(), s.cfg.NodeGrace, s.cfg.KillGrace)
			changed, err := s.db.LoseNode(ctx, n.ID, msg)
			if err != nil {
				s.log.Error("mark node lost", "node", n.ID, "err", err)
				continue
			}
			s.log.Warn("node lost", "node", n.ID, "name", n.Name, "attempts", len(changed))
			s.sessions.nodeGone(n.ID, fmt.Sprintf("node %s stopped answering", n.Name))
			for _, j := range changed {
				s.notify(j.ID)
			}
			s.Kick()
		}
	}
}
