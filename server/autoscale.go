package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/store"
)

// scaler is the loop around autoscale.Decide: every second, and at once
// when work arrives or capacity changes, it snapshots each scaled pool, asks
// Decide, and carries the decision out through the pool's provider,
// recording each step as a pool event.
//
// Removal is safe against placement: a node is drained under placeMu, the
// lock every scheduling pass and session placement holds, and only when it
// has no attempt and no session; once draining it takes no new work, and
// only then is it handed to the provider.
type scaler struct {
	s         *Server
	providers map[string]autoscale.Provider
	poke      chan struct{}

	mu       sync.Mutex
	pools    map[string]*poolScale
	pending  map[*pendingSession]struct{}
	lastBusy map[string]time.Time // node id -> last pass that saw it with work
	idle     map[string]time.Time // node id -> since when a ready node has had no work
	removing map[string]bool      // node names being removed
	noted    map[string]bool      // pools told they cannot scale here (pass only)
	changed  chan struct{}        // closed when capacity may have changed
	started  time.Time
}

// poolScale is what the loop remembers of a pool between passes.
type poolScale struct {
	history   []autoscale.Sample
	fired     []time.Time
	backoff   time.Time
	failures  int
	lastErr   string
	requested map[string]time.Time // names asked of the provider, not yet registered
	failed    map[string]bool      // instances seen failed (told once)
	engine    string               // what creating instances wait for, in the engine's words
	listErr   string               // the last failure to list that was told
	listTold  time.Time            // when it was told
	waiting   string               // the last Decision.Waiting
	booting   int                  // nodes asked for or provisioning
	nodes     int                  // nodes that are not gone
	lastLog   time.Time
}

// pendingSession is a login or notebook start waiting for a node.
type pendingSession struct {
	pool  string
	cpus  dspool.MilliCPU
	mem   dspool.Bytes
	gpus  int
	since time.Time
}

func newScaler(s *Server, providers map[string]autoscale.Provider) *scaler {
	return &scaler{s: s, providers: providers, poke: make(chan struct{}, 1), pools: map[string]*poolScale{},
		pending: map[*pendingSession]struct{}{}, lastBusy: map[string]time.Time{}, idle: map[string]time.Time{}, removing: map[string]bool{}, noted: map[string]bool{},
		changed: make(chan struct{}), started: s.cfg.Now()}
}

// UseProvider makes prov create and remove the nodes of pools whose
// provider is name.
func (s *Server) UseProvider(name string, prov autoscale.Provider) {
	s.scaler.mu.Lock()
	defer s.scaler.mu.Unlock()
	if s.scaler.providers == nil {
		s.scaler.providers = map[string]autoscale.Provider{}
	}
	s.scaler.providers[name] = prov
}

// kick starts a pass soon and wakes everyone waiting for capacity.
func (sc *scaler) kick() {
	select {
	case sc.poke <- struct{}{}:
	default:
	}
	sc.mu.Lock()
	close(sc.changed)
	sc.changed = make(chan struct{})
	sc.mu.Unlock()
}

// wait returns a channel closed at the next kick.
func (sc *scaler) wait() <-chan struct{} {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.changed
}

// scales reports whether pool can get nodes by itself: its provider is
// here and grows.
func (sc *scaler) scales(p *dspool.Pool) bool {
	return sc.provider(p.Provider.Name) != nil && !sc.fixed(p)
}

// fixed reports whether pool p's provider never grows it (static).
func (sc *scaler) fixed(p *dspool.Pool) bool {
	if p.Provider.Name == dspool.ProviderStatic {
		return true
	}
	k := sc.s.cfg.Kinds.Kind(p.Provider.Name)
	return k != nil && k.Fixed
}

func (sc *scaler) provider(name string) autoscale.Provider {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.providers[name]
}

// pokeGap is the least time between two passes: a burst of submissions
// that find no room pokes the autoscaler once each, and a pass reads every
// active job, so back-to-back passes would cost as much as the submissions
// themselves. The first poke after a quiet spell is answered at once.
const pokeGap = 100 * time.Millisecond

func (sc *scaler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	// The first pass at once: until it has run, nothing is known to be
	// booting, and a login arriving while the agents reconnect after a
	// restart would be refused rather than wait for them.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-sc.poke:
			case <-t.C:
			}
		}
		if err := sc.pass(ctx); err != nil && ctx.Err() == nil {
			sc.s.log.Error("autoscaler pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pokeGap):
		}
	}
}

// nodeFacts is what the hub knows of a connected node.
type nodeFacts struct {
	state dspool.NodeState
	inv   dspool.Inventory
	usage dspool.Usage
}

func (sc *scaler) pass(ctx context.Context) error {
	s := sc.s
	now := s.cfg.Now()
	pools, err := s.db.Pools(ctx)
	if err != nil {
		return err
	}
	active, err := s.db.ActiveJobs(ctx)
	if err != nil {
		return err
	}
	stored, err := s.db.Nodes(ctx, "", false)
	if err != nil {
		return err
	}
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return err
	}
	st, err := s.standing(ctx, dir, active, now)
	if err != nil {
		return err
	}
	lim := s.passLimits(dir, pools, active, s.queued(active, st), stored)
	facts := s.hub.facts()
	held := s.sessions.reserved()
	sessions := s.sessions.perNode()
	keep := map[string]bool{}
	for _, p := range pools {
		prov := sc.provider(p.Provider.Name)
		if prov == nil || sc.fixed(p) {
			if p.Autoscale != nil && !sc.noted[p.Name] {
				sc.noted[p.Name] = true
				s.event(ctx, p.Name, dspool.EventPolicy, nil, fmt.Sprintf("pool %s autoscales, but this control plane has no %s provider: its nodes are not added or removed (local pools scale under `dspool up`)", p.Name, p.Provider))
			}
			continue
		}
		keep[p.Name] = true
		insts, err := prov.List(ctx, p)
		if err != nil {
			// A cached list may still be there: the pool goes on with it.
			s.log.Error("autoscaler: list nodes", "pool", p.Name, "err", err)
			sc.listFailed(ctx, p, err, now)
			if insts == nil {
				continue
			}
		}
		insts = sc.instances(ctx, p, insts, now)
		st := sc.state(p, now, insts, stored, active, facts, held, sessions, lim)
		d := autoscale.Decide(st, now)
		sc.apply(ctx, p, prov, st, d, now)
	}
	s.setLimitWaits(lim.waits)
	sc.mu.Lock()
	for name := range sc.pools {
		if !keep[name] {
			delete(sc.pools, name)
		}
	}
	live := make(map[string]bool, len(stored))
	for _, n := range stored {
		live[n.ID] = true
	}
	for id := range sc.lastBusy {
		if !live[id] {
			delete(sc.lastBusy, id)
		}
	}
	for id := range sc.idle {
		if !live[id] {
			delete(sc.idle, id)
		}
	}
	sc.mu.Unlock()
	return nil
}

// state builds what Decide needs of pool p. Nodes are the union of the
// store's nodes of p and the provider's instances: an instance that has not
// registered yet is provisioning.
func (sc *scaler) state(p *dspool.Pool, now time.Time, insts []autoscale.Instance, stored []*dspool.Node,
	active []store.ActiveJob, facts map[string]nodeFacts, held map[string]store.NodeLoad, sessions map[string]int, lim *passLimits) *autoscale.State {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ps := sc.poolState(p.Name)
	pol := autoscale.Policy(p)
	if len(ps.fired) != len(pol.Rules) {
		ps.fired = make([]time.Time, len(pol.Rules))
	}
	st := &autoscale.State{Pool: p, History: ps.history, Fired: ps.fired, Backoff: ps.backoff, BackoffReason: ps.lastErr}
	listed := map[string]time.Time{}
	for _, in := range insts {
		listed[in.Name] = in.Created
	}
	type load struct {
		attempts, gpus int
		cpus           dspool.MilliCPU
		mem            dspool.Bytes
	}
	loads := map[string]*load{}
	var ids []int64 // of the queued jobs in st.Waiting
	for _, j := range active {
		switch {
		case j.State == dspool.JobQueued && j.Pool == p.Name && !lim.held[j.ID] && !sc.s.preempts.waits(j.ID):
			// A job that evictions make room for needs no new node.
			st.Waiting = append(st.Waiting, autoscale.Demand{Kind: autoscale.KindJob, CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs,
				Owners: lim.owners(j.User, j.Team)})
			ids = append(ids, j.ID)
		case j.State == dspool.JobRunning && j.Pool == p.Name:
			l := loads[j.Node]
			if l == nil {
				l = &load{}
				loads[j.Node] = l
			}
			l.attempts++
			l.cpus += j.CPUs
			l.mem += j.Memory
			l.gpus += len(j.GPUIndices)
		}
	}
	st.Waiting = lim.capJobs(p, ids, st.Waiting)
	for w := range sc.pending {
		if w.pool == p.Name {
			st.Waiting = append(st.Waiting, autoscale.Demand{Kind: autoscale.KindSession, CPUs: w.cpus, Memory: w.mem, GPUs: w.gpus, Since: w.since})
		}
	}
	registered := map[string]bool{}
	ps.booting, ps.nodes = 0, 0
	for _, n := range stored {
		if n.Pool != p.Name {
			continue
		}
		registered[n.Name] = true
		an := autoscale.Node{ID: n.ID, Name: n.Name, Created: n.CreatedAt}
		f, connected := facts[n.ID]
		created, isListed := listed[n.Name]
		switch {
		case connected:
			an.State = f.state
		case n.State == dspool.NodeFailed || n.State == dspool.NodeDraining:
			an.State = n.State
		case isListed:
			// Its agent is (re)starting: booting, as far as capacity goes.
			an.State, an.Created = dspool.NodeProvisioning, created
		default:
			an.State = dspool.NodeLost
		}
		l := loads[n.ID]
		if l == nil {
			l = &load{}
		}
		an.Attempts = l.attempts
		an.Sessions = sessions[n.ID]
		r := held[n.ID]
		inv := n.Inventory
		if connected {
			inv = f.inv
			an.Load1, an.MemUsed = f.usage.Load1, f.usage.MemUsed
		}
		an.FreeCPUs = inv.CPUs - l.cpus - r.CPUs
		an.FreeMem = inv.Memory - l.mem - r.Memory
		an.FreeGPUs = len(inv.GPUs) - l.gpus
		an.GPUsHeld = l.gpus
		if !an.Idle() {
			sc.lastBusy[n.ID] = now
		}
		an.IdleSince = sc.lastBusy[n.ID]
		if an.IdleSince.IsZero() {
			an.IdleSince = later(n.CreatedAt, sc.started)
		}
		if an.State == dspool.NodeLost && n.LastSeen != nil {
			an.IdleSince = later(an.IdleSince, *n.LastSeen)
		}
		if an.State == dspool.NodeReady && an.Idle() {
			sc.idle[n.ID] = an.IdleSince
		} else {
			delete(sc.idle, n.ID)
		}
		if an.State == dspool.NodeProvisioning {
			ps.booting++
		}
		ps.nodes++
		st.Nodes = append(st.Nodes, an)
	}
	for name, t := range ps.requested {
		if _, ok := listed[name]; registered[name] || !ok {
			delete(ps.requested, name)
			continue
		}
		st.Nodes = append(st.Nodes, autoscale.Node{Name: name, State: dspool.NodeProvisioning, Created: t, IdleSince: t})
		ps.booting++
		ps.nodes++
	}
	for name, created := range listed {
		if !registered[name] && ps.requested[name].IsZero() && !sc.removing[name] {
			st.Nodes = append(st.Nodes, autoscale.Node{Name: name, State: dspool.NodeProvisioning, Created: created, IdleSince: created})
			ps.booting++
			ps.nodes++
		}
	}
	// History: one sample a second at most, as long as the longest window.
	if n := len(ps.history); n == 0 || now.Sub(ps.history[n-1].At) >= time.Second {
		ps.history = append(ps.history, autoscale.Measure(st, now))
	}
	longest := time.Minute
	for _, r := range pol.Rules {
		longest = max(longest, time.Duration(r.Window)+time.Minute)
	}
	i := 0
	for i < len(ps.history) && now.Sub(ps.history[i].At) > longest {
		i++
	}
	if i > 0 {
		ps.history = append(ps.history[:0], ps.history[i:]...)
	}
	st.History = ps.history
	st.Fired = append([]time.Time(nil), ps.fired...)
	return st
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// apply carries out d for pool p.
func (sc *scaler) apply(ctx context.Context, p *dspool.Pool, prov autoscale.Provider, st *autoscale.State, d autoscale.Decision, now time.Time) {
	s := sc.s
	sc.mu.Lock()
	ps := sc.pools[p.Name]
	for _, i := range d.Fired {
		if i < len(ps.fired) {
			ps.fired[i] = now
		}
	}
	waitingChanged := d.Waiting != ps.waiting
	ps.waiting = d.Waiting
	sc.mu.Unlock()
	if waitingChanged && d.Waiting != "" {
		s.event(ctx, p.Name, dspool.EventWaiting, nil, "work waits: "+d.Waiting)
	}

	if d.Add > 0 {
		var names []string
		joins, err := s.newJoins(ctx, p, d.Add)
		if err == nil {
			names, err = prov.Grow(ctx, autoscale.GrowRequest{Pool: p, Joins: joins})
		}
		if errors.Is(err, autoscale.ErrStopping) {
			return // shutting down: the nodes went with the provider
		}
		sc.mu.Lock()
		for _, n := range names {
			ps.requested[n] = now
			ps.booting++
		}
		if err != nil {
			ps.failures++
			ps.backoff = now.Add(autoscale.Backoff(autoscale.ClassOf(err), ps.failures))
			ps.lastErr = err.Error()
			if errors.Is(err, autoscale.ErrFixed) {
				ps.backoff = now.Add(time.Hour)
			}
		} else {
			ps.failures, ps.lastErr = 0, ""
		}
		sc.mu.Unlock()
		if len(names) > 0 {
			s.event(ctx, p.Name, dspool.EventScaleOut, names, fmt.Sprintf("added %s: %s", dspool.Plural(len(names), "node"), d.AddReason))
			s.log.Info("autoscaler added nodes", "pool", p.Name, "nodes", names, "reason", d.AddReason)
		}
		if err != nil {
			s.event(ctx, p.Name, dspool.EventProviderError, nil, fmt.Sprintf("could not add %s (%s): %v; trying again in %s",
				dspool.Plural(d.Add-len(names), "node"), d.AddReason, err, ps.backoff.Sub(now).Round(time.Second)))
			s.log.Error("autoscaler: provider could not add nodes", "pool", p.Name, "err", err)
		}
		sc.kick()
	}

	// Group removals by reason: one event per decision.
	var drained []string
	var reasons []string
	for _, r := range d.Remove {
		if !sc.claim(r.Name) {
			continue
		}
		if r.ID != "" {
			ok, err := sc.drain(ctx, r.ID)
			if err != nil {
				s.log.Error("autoscaler: drain", "node", r.Name, "err", err)
			}
			if err != nil || !ok { // !ok: work arrived since the snapshot: keep it
				sc.unclaim(r.Name)
				continue
			}
		}
		drained = append(drained, r.Name)
		reasons = append(reasons, r.Reason)
		go sc.remove(p, prov, r)
	}
	if len(drained) > 0 {
		s.event(ctx, p.Name, dspool.EventScaleIn, drained, fmt.Sprintf("removing %s: %s", strings.Join(drained, ", "), summarize(reasons)))
	}
}

// summarize joins distinct reasons.
func summarize(reasons []string) string {
	var out []string
	seen := map[string]bool{}
	for _, r := range reasons {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return strings.Join(out, "; ")
}

// drain marks node id draining if it has no attempt and no session (see
// Server.drainNode). It reports whether it did.
func (sc *scaler) drain(ctx context.Context, id string) (bool, error) {
	_, ok, err := sc.s.drainNode(ctx, id, true)
	return ok, err
}

// claim marks the node called name as being removed, unless it is already:
// the autoscaler and an admin never remove the same node at once.
func (sc *scaler) claim(name string) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.removing[name] {
		return false
	}
	sc.removing[name] = true
	return true
}

// release ends a claim and starts a pass.
func (sc *scaler) release(name string) {
	sc.unclaim(name)
	sc.kick()
}

func (sc *scaler) unclaim(name string) {
	sc.mu.Lock()
	delete(sc.removing, name)
	sc.mu.Unlock()
}

func (sc *scaler) isRemoving(name string) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.removing[name]
}

// remove hands a drained node to its provider, then retires it.
func (sc *scaler) remove(p *dspool.Pool, prov autoscale.Provider, r autoscale.Removal) {
	defer sc.release(r.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sc.retire(ctx, p, prov, r); err != nil {
		sc.s.event(ctx, p.Name, dspool.EventProviderError, []string{r.Name}, fmt.Sprintf("could not remove node %s: %v; trying again", r.Name, err))
		sc.s.log.Error("autoscaler: provider could not remove a node", "pool", p.Name, "node", r.Name, "err", err)
	}
}

// retire removes a drained node: its provider (nil: none here) removes the
// machine, then the store marks it gone for good, its connection is closed
// and its sessions end. It records a node_removed event.
func (sc *scaler) retire(ctx context.Context, p *dspool.Pool, prov autoscale.Provider, r autoscale.Removal) error {
	s := sc.s
	if prov != nil {
		if err := prov.Remove(ctx, p, []string{r.Name}); err != nil {
			return err
		}
	}
	if r.ID != "" {
		changed, err := s.db.RemoveNode(context.WithoutCancel(ctx), r.ID, "removed from the pool: "+r.Reason)
		if err != nil {
			return fmt.Errorf("retire node %s: %w", r.Name, err)
		}
		for _, j := range changed {
			s.notify(j.ID)
		}
		s.hub.disconnect(r.ID)
		s.sessions.nodeGone(r.ID, fmt.Sprintf("node %s was removed from pool %s", r.Name, p.Name))
	}
	what := r.Name
	if r.ID != "" {
		what += " (" + r.ID + ")" // names are reused; the id is what jobs name
	}
	s.event(ctx, p.Name, dspool.EventRemove, []string{r.Name}, fmt.Sprintf("removed node %s: %s", what, r.Reason))
	s.log.Info("node removed", "pool", p.Name, "node", r.Name, "reason", r.Reason)
	return nil
}

// event records a pool event; a failure to record is logged, not fatal.
func (s *Server) event(ctx context.Context, pool, kind string, nodes []string, msg string) {
	ev := &dspool.PoolEvent{Pool: pool, Kind: kind, Nodes: nodes, Message: msg}
	if err := s.db.AddPoolEvent(context.WithoutCancel(ctx), ev); err != nil {
		s.log.Error("record pool event", "pool", pool, "err", err)
	}
}

// progress says how the wait for a node in pool p is going: "1 of 1
// starting", or why no node is coming.
func (sc *scaler) progress(p *dspool.Pool) string {
	if msg := sc.jobWaiting(p.Name); msg != "" {
		return msg
	}
	return "asking for a node"
}

// jobWaiting says how the wait for a node goes for a job queued in pool,
// or "" when the pool is not getting one.
func (sc *scaler) jobWaiting(pool string) string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ps := sc.pools[pool]
	switch {
	case ps == nil:
		return ""
	case ps.waiting != "":
		return ps.waiting
	case ps.booting > 0 && ps.engine != "":
		return fmt.Sprintf("%d of %d starting; %s", ps.booting, ps.nodes, ps.engine)
	case ps.booting > 0:
		return fmt.Sprintf("%d of %d starting", ps.booting, ps.nodes)
	}
	return ""
}

// addPending registers a session waiting for a node of pool p and starts a
// pass at once.
func (sc *scaler) addPending(w *pendingSession) {
	sc.mu.Lock()
	sc.pending[w] = struct{}{}
	sc.mu.Unlock()
	select {
	case sc.poke <- struct{}{}:
	default:
	}
}

func (sc *scaler) donePending(w *pendingSession) {
	sc.mu.Lock()
	delete(sc.pending, w)
	sc.mu.Unlock()
}

// poolState returns what the loop keeps of pool, made on first use. sc.mu
// is held.
func (sc *scaler) poolState(pool string) *poolScale {
	ps := sc.pools[pool]
	if ps == nil {
		ps = &poolScale{requested: map[string]time.Time{}, failed: map[string]bool{}}
		sc.pools[pool] = ps
	}
	return ps
}

// instances reads what the provider says of pool p's instances. A failed
// one that was asked for and never joined counts as a failure of the pool,
// which backs off, and is told once as a provider_error; any failed one is
// left out of what the decision sees, so the node is
// asked for again after the backoff. What creating ones wait for, in the
// engine's words, becomes part of the waiting work's reason, and an event
// when it changes.
func (sc *scaler) instances(ctx context.Context, p *dspool.Pool, insts []autoscale.Instance, now time.Time) []autoscale.Instance {
	s := sc.s
	type told struct{ kind, msg string }
	var events []told
	sc.mu.Lock()
	ps := sc.poolState(p.Name)
	live := insts[:0:0]
	seen := map[string]bool{}
	var waits []string
	var worst autoscale.Class
	for _, in := range insts {
		seen[in.Name] = true
		if in.State == autoscale.InstanceFailed {
			// Only one asked for that never joined failed to start: a
			// node that ran and ended (its agent cut off by an admin) is
			// told by the node's own events.
			if !ps.failed[in.Name] && !ps.requested[in.Name].IsZero() {
				ps.failed[in.Name] = true
				var err error = fmt.Errorf("node %s did not start", in.Name)
				if in.Err != nil {
					err = in.Err
				}
				ps.failures++
				ps.backoff = now.Add(autoscale.Backoff(autoscale.ClassOf(err), ps.failures))
				ps.lastErr = err.Error()
				events = append(events, told{dspool.EventProviderError, fmt.Sprintf("node %s did not start: %v; trying again in %s",
					in.Name, err, ps.backoff.Sub(now).Round(time.Second))})
			}
			continue
		}
		if in.State == autoscale.InstanceCreating && in.Err != nil && !slices.Contains(waits, in.Err.Error()) {
			waits = append(waits, in.Err.Error())
			if worst == "" || worst == autoscale.ClassCapacity {
				worst = in.Err.Class
			}
		}
		live = append(live, in)
	}
	for name := range ps.failed {
		if !seen[name] {
			delete(ps.failed, name)
		}
	}
	engine := strings.Join(waits, "; ")
	if engine != ps.engine && engine != "" {
		kind := dspool.EventWaiting
		if worst != autoscale.ClassCapacity {
			kind = dspool.EventProviderError
		}
		events = append(events, told{kind, "new nodes wait: " + engine})
	}
	ps.engine = engine
	sc.mu.Unlock()
	for _, e := range events {
		s.event(ctx, p.Name, e.kind, nil, e.msg)
	}
	return live
}

// listFailed tells a failure to list pool p's nodes as a provider_error:
// once, and again when it says something else or five minutes on (the
// list cache keeps the engine from being asked at every pass; a provider
// without one is asked again at the next).
func (sc *scaler) listFailed(ctx context.Context, p *dspool.Pool, err error, now time.Time) {
	sc.mu.Lock()
	ps := sc.poolState(p.Name)
	tell := err.Error() != ps.listErr || now.Sub(ps.listTold) >= 5*time.Minute
	if tell {
		ps.listErr, ps.listTold = err.Error(), now
	}
	sc.mu.Unlock()
	if tell {
		sc.s.event(ctx, p.Name, dspool.EventProviderError, nil, fmt.Sprintf("could not list the pool's nodes: %v", err))
	}
}

// idleSince is since when node id, ready, has had no work as of the last
// pass (false: it has work, or is not ready).
func (sc *scaler) idleSince(id string) (time.Time, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	t, ok := sc.idle[id]
	return t, ok
}
