package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/store"
)

// sessions holds the live interactive sessions. A session is a user's
// presence on one node of a pool: it reserves the pool's per-session
// cpus and memory there (the batch scheduler sees them as taken), and every
// connection of that user to that pool joins it until the last one closes.
type sessions struct {
	s  *Server
	mu sync.Mutex
	// live sessions by id, and by user and pool.
	live   map[string]*Lease
	byUser map[[2]string]*Lease
	// ending are sessions ended here whose node is not yet told (it
	// waits for gateways to tell their users): a node's report of one
	// does not make it end there sooner.
	ending map[string]bool
	// conns are the connections' leases, by the credential that opened
	// them (access.go).
	conns connSet
	// stopping is set as the control plane shuts down: connections closing
	// then leave their sessions active, for the next run to take up.
	stopping atomic.Bool
	// recovered is set once the sessions of the previous run are taken up
	// (recover.go); early holds, by node, the last report of its sessions
	// made before, judged then. Both guarded by mu.
	recovered bool
	early     map[string]earlyReport
}

func newSessions(s *Server) *sessions {
	return &sessions{s: s, live: map[string]*Lease{}, byUser: map[[2]string]*Lease{}, ending: map[string]bool{},
		early: map[string]earlyReport{}}
}

// Lease is one connection's hold on a session. Close it when the connection
// ends; the session ends with its last lease.
type Lease struct {
	sm    *sessions
	rec   dspool.Session // immutable after creation, but for the counters below
	team  string         // whose limits the session's reservation counts against
	setup api.SessionSetup
	conns int  // guarded by sm.mu
	ended bool // guarded by sm.mu: finished (by its last lease or from outside)
	// Guarded by sm.mu, for a session taken up after a restart: pending
	// until its node reports it; held while the restart's hold (counted in
	// conns) keeps it for the user's next login, until holdUntil.
	pending   bool
	held      bool
	holdUntil time.Time
	done      chan struct{}
	why       atomic.Pointer[string]
	// disabled is set before done is closed when the session ends because
	// its user was disabled.
	disabled atomic.Bool

	in, out atomic.Int64
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	saved   atomic.Int64 // last value of last written to the store

	// idle is the pool's sessions.idle for an SSH session (0: none);
	// timer ends it at its time limit (guarded by sm.mu).
	idle  time.Duration
	timer *time.Timer
}

// ID is the session's id; Node and NodeName where it runs.
func (l *Lease) ID() string       { return l.rec.ID }
func (l *Lease) Node() string     { return l.rec.Node }
func (l *Lease) NodeName() string { return l.rec.NodeName }
func (l *Lease) Pool() string     { return l.rec.Pool }

// Done is closed when the session ends for a reason other than its
// connections closing (killed, node lost); Reason says why.
func (l *Lease) Done() <-chan struct{} { return l.done }
func (l *Lease) Reason() string {
	if p := l.why.Load(); p != nil {
		return *p
	}
	return ""
}

// In and Out count bytes from and to the user.
func (l *Lease) In(n int) {
	l.in.Add(int64(n))
	l.last.Store(time.Now().UnixNano())
}
func (l *Lease) Out(n int) {
	l.out.Add(int64(n))
	l.last.Store(time.Now().UnixNano())
}

func (l *Lease) activity() store.SessionActivity {
	return store.SessionActivity{ID: l.rec.ID, LastActivity: time.Unix(0, l.last.Load()), BytesIn: l.in.Load(), BytesOut: l.out.Load()}
}

// Close gives the lease back; the last one ends the session.
func (l *Lease) Close() { l.CloseWith("the user logged out") }

// CloseWith gives the lease back; if it is the last one, the session ends
// with reason.
func (l *Lease) CloseWith(reason string) {
	sm := l.sm
	sm.mu.Lock()
	l.conns--
	if sm.stopping.Load() {
		sm.mu.Unlock()
		return // the next run takes the session up
	}
	last := l.conns == 0 && !l.ended
	if last {
		l.ended = true
		sm.forget(l)
	}
	sm.mu.Unlock()
	if last {
		sm.finish(l, reason)
	}
}

// forget removes l from the maps; sm.mu is held.
func (sm *sessions) forget(l *Lease) {
	if l.timer != nil {
		l.timer.Stop()
	}
	if sm.live[l.rec.ID] == l {
		delete(sm.live, l.rec.ID)
	}
	k := sessionKey(l.rec.User, l.rec.Pool, l.rec.Size)
	if sm.byUser[k] == l {
		delete(sm.byUser, k)
	}
}

// finish records the end of a session and tells its node to clean up.
func (sm *sessions) finish(l *Lease, reason string) {
	sm.recordEnd(l, reason)
	sm.tellNode(l)
}

// recordEnd records the end of a session.
func (sm *sessions) recordEnd(l *Lease, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sm.s.db.EndSession(ctx, l.activity(), reason, sm.s.cfg.Now()); err != nil {
		sm.s.log.Error("record session end", "session", l.rec.ID, "err", err)
	}
	sm.s.log.Info("session ended", "session", l.rec.ID, "user", l.rec.User, "node", l.rec.Node, "reason", reason)
	sm.s.Kick() // its reservation is free for jobs
}

// tellNode has the session's node end it: its processes are killed.
func (sm *sessions) tellNode(l *Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sm.s.hub.call(ctx, l.rec.Node, "/sessions/end", api.SessionEnd{Session: l.rec.ID}); err != nil {
		sm.s.log.Debug("end session on node", "session", l.rec.ID, "err", err)
	}
}

// end ends a session from outside: its connections are told why and closed.
func (sm *sessions) end(l *Lease, reason string) bool {
	sm.mu.Lock()
	if l.ended {
		sm.mu.Unlock()
		return false
	}
	l.ended = true
	sm.forget(l)
	sm.mu.Unlock()
	l.why.Store(&reason)
	close(l.done)
	if !sm.s.gateways.holds(l) {
		sm.finish(l, reason)
		return true
	}
	// Gateways of their own process hear of it at their next heartbeat:
	// the node kills the processes once they have told their users why
	// and closed the connections, so that the users do not see a bare
	// end. Meanwhile the node's reports of the session do not end it
	// there sooner (ending).
	sm.mu.Lock()
	sm.ending[l.rec.ID] = true
	sm.mu.Unlock()
	sm.recordEnd(l, reason)
	go func() {
		sm.s.gateways.told(l, 2*sm.s.cfg.Heartbeat+time.Second)
		sm.tellNode(l)
		sm.mu.Lock()
		delete(sm.ending, l.rec.ID)
		sm.mu.Unlock()
	}()
	return true
}

// nodeGone ends every session on a node.
func (sm *sessions) nodeGone(node, reason string) {
	sm.mu.Lock()
	var ls []*Lease
	for _, l := range sm.live {
		if l.rec.Node == node {
			ls = append(ls, l)
		}
	}
	sm.mu.Unlock()
	for _, l := range ls {
		sm.end(l, reason)
	}
}

// reserved sums the reservations of live sessions by node.
func (sm *sessions) reserved() map[string]store.NodeLoad {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out := map[string]store.NodeLoad{}
	for _, l := range sm.live {
		r := out[l.rec.Node]
		r.CPUs += l.rec.CPUs
		r.Memory += l.rec.Memory
		r.GPUs = append(r.GPUs, l.rec.GPUIndices...)
		out[l.rec.Node] = r
	}
	return out
}

// hold is a live session's reservation, and whose it is.
type hold struct {
	user, team, node string
	cpus             dspool.MilliCPU
	mem              dspool.Bytes
	gpus             int
}

// holds returns the reservations of live sessions.
func (sm *sessions) holds() []hold {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out := make([]hold, 0, len(sm.live))
	for _, l := range sm.live {
		out = append(out, hold{user: l.rec.User, team: l.team, node: l.rec.Node, cpus: l.rec.CPUs, mem: l.rec.Memory, gpus: len(l.rec.GPUIndices)})
	}
	return out
}

func (sm *sessions) count() int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return len(sm.live)
}

// record writes the counters of sessions with new activity.
func (sm *sessions) record(ctx context.Context) {
	sm.mu.Lock()
	var acts []store.SessionActivity
	for _, l := range sm.live {
		if last := l.last.Load(); last != l.saved.Load() {
			a := l.activity()
			a.Connections = l.connections()
			acts = append(acts, a)
			l.saved.Store(last)
		}
	}
	sm.mu.Unlock()
	if err := sm.s.db.RecordActivity(ctx, acts); err != nil && ctx.Err() == nil {
		sm.s.log.Error("record session activity", "err", err)
	}
}

func (sm *sessions) recordLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sm.record(ctx)
			sm.releaseHolds(sm.s.cfg.Now())
			sm.cullIdle(sm.s.cfg.Now())
		}
	}
}

// interactivePool returns the pool a login lands in: the one it names, or
// the default interactive pool.
func (s *Server) interactivePool(ctx context.Context, name string) (*dspool.Pool, error) {
	if name != "" {
		p, err := s.hub.pool(ctx, name)
		if err != nil {
			return nil, dspool.Errorf(dspool.ENotFound, "pool %s does not exist: log in as USER or USER+POOL with a pool from `dspool pool list`", name)
		}
		if !p.Takes(dspool.WorkInteractive) {
			return nil, dspool.Errorf(dspool.EInvalid, "pool %s does not take interactive sessions: choose a pool whose work includes interactive", name)
		}
		return p, nil
	}
	pools, err := s.db.Pools(ctx)
	if err != nil {
		return nil, err
	}
	var inter []*dspool.Pool
	for _, p := range pools {
		if p.Takes(dspool.WorkInteractive) {
			if p.Sessions != nil && p.Sessions.Default {
				return p, nil
			}
			inter = append(inter, p)
		}
	}
	for _, p := range inter {
		if p.Name == dspool.DefaultPool {
			return p, nil
		}
	}
	switch len(inter) {
	case 0:
		return nil, dspool.Errorf(dspool.EUnavailable, "no pool takes interactive sessions: an admin adds interactive to a pool's work")
	case 1:
		return inter[0], nil
	}
	names := make([]string, len(inter))
	for i, p := range inter {
		names[i] = p.Name
	}
	return nil, dspool.Errorf(dspool.EInvalid, "several pools take sessions and none is the default: log in as USER+POOL, with POOL one of %s", strings.Join(names, ", "))
}

// OpenSession gives a connection of user a lease on a session in the pool
// named (empty: the default interactive pool), where is POOL or POOL+SIZE
// as the login gives them (dspool.Login.Where): the user's existing session
// of that size there, or a new one on the least-loaded ready node with
// room for it.
// When no node has room and the pool can get one (it autoscales, or a node
// is starting), it waits up to the pool's wait_timeout, calling progress
// (when not nil) with how the wait is going. cred is how the connection
// authenticated (KeyCredential, PasswordCredential): removing it ends the
// connection.
func (s *Server) OpenSession(ctx context.Context, user *dspool.User, where, remote, cred string, progress func(string)) (*ConnLease, error) {
	pool, size, _ := strings.Cut(where, "+")
	p, err := s.interactivePool(ctx, pool)
	if err != nil {
		return nil, err
	}
	z, err := p.SessionSize(size)
	if err != nil {
		return nil, err
	}
	l, err := s.awaitSession(ctx, user, p, z, remote, dspool.SessionSSH, progress)
	if err != nil {
		return nil, err
	}
	return s.connect(ctx, l, user.Name, cred), nil
}

// noRoom is the error of a placement that found no node with room.
type noRoom struct{ err *dspool.Error }

func (e noRoom) Error() string { return e.err.Error() }
func (e noRoom) Unwrap() error { return e.err }

// canWait reports whether work that finds no room in p may wait for a node:
// the pool autoscales, or one of its nodes is starting.
func (sc *scaler) canWait(p *dspool.Pool) bool {
	if !sc.scales(p) {
		return false
	}
	if p.Autoscale != nil {
		return true
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ps := sc.pools[p.Name]
	return ps != nil && ps.booting > 0
}

// awaitSession places a session in p, waiting for a node when there is no
// room and the pool can get one.
func (s *Server) awaitSession(ctx context.Context, user *dspool.User, p *dspool.Pool, z dspool.SessionSize, remote string, kind dspool.SessionKind, progress func(string)) (*Lease, error) {
	var w *pendingSession
	var deadline <-chan time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		wake := s.scaler.wait()
		l, err := s.placeSession(ctx, user, p, z, remote, kind)
		var nr noRoom
		if err == nil || !errors.As(err, &nr) || (w == nil && !s.scaler.canWait(p)) {
			if w != nil {
				s.scaler.donePending(w)
			}
			return l, err
		}
		if w == nil {
			w = &pendingSession{pool: p.Name, cpus: z.CPUs, mem: z.Memory, gpus: z.GPUs, since: s.cfg.Now()}
			s.scaler.addPending(w)
			timer := time.NewTimer(time.Duration(autoscale.Policy(p).WaitTimeout))
			defer timer.Stop()
			deadline = timer.C
			s.log.Info("session waits for a node", "user", user.Name, "pool", p.Name)
		}
		if progress != nil {
			progress(fmt.Sprintf("waiting for a node in pool %s: %s", p.Name, s.scaler.progress(p)))
		}
		select {
		case <-ctx.Done():
			s.scaler.donePending(w)
			return nil, dspool.Errorf(dspool.EUnavailable, "stopped waiting for a node in pool %s", p.Name)
		case <-deadline:
			s.scaler.donePending(w)
			return nil, dspool.Errorf(dspool.EUnavailable, "no node of pool %s could take your session within %s (its wait_timeout): %s; try again later, or ask an admin to look at `dspool pool events %s`",
				p.Name, time.Duration(autoscale.Policy(p).WaitTimeout), s.scaler.progress(p), p.Name)
		case <-wake:
		case <-tick.C:
		}
	}
}

// placeSession places a session of user and size z in p now: the user's
// existing one of that size, or a new one on the least-loaded ready node
// with room. It fails with noRoom when no node has room.
func (s *Server) placeSession(ctx context.Context, user *dspool.User, p *dspool.Pool, z dspool.SessionSize, remote string, kind dspool.SessionKind) (*Lease, error) {
	sm := s.sessions
	// Placing a session and a scheduling pass must not both count the same
	// free capacity.
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.CheckGrant(dir.of[user.Name], user.Admin); err != nil {
		return nil, err
	}

	ready := s.hub.ready()
	sm.mu.Lock()
	if l := sm.byUser[sessionKey(user.Name, p.Name, z.Key())]; l != nil {
		if l.pending {
			sm.mu.Unlock()
			return nil, dspool.Errorf(dspool.EUnavailable, "your session on node %s waits for its node to reconnect after a control plane restart: try again in a few seconds", l.rec.NodeName)
		}
		if _, ok := ready[l.rec.Node]; ok {
			l.join()
			sm.mu.Unlock()
			return l, nil
		}
	}
	sm.mu.Unlock()

	load, err := s.db.RunningLoad(ctx)
	if err != nil {
		return nil, err
	}
	held := sm.reserved()
	counts := sm.perNode()
	var nodes []scheduler.SessionNode
	for id, n := range ready {
		if n.pool != p.Name {
			continue
		}
		l, r := load[id], held[id]
		if z.GPUs > 0 && len(freeGPUs(n.inv.GPUs, z.GPUWant(), l.GPUs, r.GPUs)) < z.GPUs {
			continue
		}
		nodes = append(nodes, scheduler.SessionNode{Node: scheduler.Node{ID: id, Pool: n.pool, CPUs: n.inv.CPUs, Memory: n.inv.Memory,
			FreeCPUs: n.inv.CPUs - l.CPUs - r.CPUs, FreeMem: n.inv.Memory - l.Memory - r.Memory}, Sessions: counts[id]})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	settings := p.SessionSettings()
	cpus, mem := z.CPUs, z.Memory
	// Over a limit, a login is refused at once rather than made to wait:
	// room under a limit comes back only when other work ends.
	team, err := s.sessionTeam(ctx, user, p, cpus, mem, z.GPUs)
	if err != nil {
		return nil, err
	}
	id, _, ok := scheduler.Route(nodes, "", cpus, mem, settings.Placement)
	if !ok {
		if len(nodes) == 0 && z.GPUs > 0 {
			return nil, noRoom{err: dspool.Errorf(dspool.EUnavailable, "no ready node of pool %s has %s %s free for your session right now: try again later, or ask for fewer", p.Name, dspool.Plural(z.GPUs, "GPU"), z.GPUWant())}
		}
		if len(nodes) == 0 {
			return nil, noRoom{err: dspool.Errorf(dspool.EUnavailable, "pool %s has no ready node for your session right now: try again in a minute, or ask an admin to add nodes (`dspool node list`)", p.Name)}
		}
		which := fmt.Sprintf("all %d ready nodes of pool %s are full: none has", len(nodes), p.Name)
		if len(nodes) == 1 {
			which = fmt.Sprintf("the ready node of pool %s is full: it does not have", p.Name)
		}
		return nil, noRoom{err: dspool.Errorf(dspool.EUnavailable, "%s %s and %s of memory free for a session; try again later, or ask an admin to add nodes",
			which, dspool.Plural(cpus, "cpu"), mem)}
	}
	node, err := s.db.Node(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	rec := dspool.Session{ID: newSessionID(), User: user.Name, Kind: kind, Pool: p.Name,
		Node: id, NodeName: node.Name, CPUs: cpus, Memory: mem, State: dspool.SessionActive, Remote: remote,
		Connections: 1, StartedAt: now, LastActivity: now, Size: z.Key()}
	if z.GPUs > 0 {
		rec.GPUIndices = freeGPUs(ready[id].inv.GPUs, z.GPUWant(), load[id].GPUs, held[id].GPUs)[:z.GPUs]
	}
	if z.Time > 0 {
		ends := now.Add(time.Duration(z.Time))
		rec.EndsAt = &ends
	}
	if err := s.db.CreateSession(ctx, &rec); err != nil {
		return nil, err
	}
	l := &Lease{sm: sm, rec: rec, team: team, conns: 1, done: make(chan struct{}),
		setup: api.SessionSetup{Session: rec.ID, Pool: p.Name, User: api.RunAs{Name: user.Name, UID: user.UID, GID: user.GID},
			Home: share.Home(user.Name), Notebooks: share.Notebooks(user.Name), CPUs: cpus, Memory: mem, Forwarding: settings.Forwarding,
			Secrets:   s.sessionSecrets(ctx, user.Name, fmt.Sprintf("session %s on node %s", rec.ID, node.Name)),
			WorkToken: s.workTokens.session(rec.ID, user.Name), GPUs: rec.GPUIndices},
		idle: time.Duration(settings.Idle)}
	l.setup.Image, l.setup.ImageFile, l.setup.ImageNetwork = sessionImage(p)
	l.last.Store(now.UnixNano())
	l.saved.Store(now.UnixNano())
	s.makeUserDir(ctx, user.Name, l.setup.Home, 0o700)
	s.makeUserDir(ctx, user.Name, l.setup.Notebooks, 0o700)
	sm.mu.Lock()
	sm.live[rec.ID] = l
	sm.byUser[sessionKey(user.Name, p.Name, rec.Size)] = l
	sm.mu.Unlock()
	sm.limitTime(l)
	s.log.Info("session started", "session", rec.ID, "user", user.Name, "pool", p.Name, "node", id)
	return l, nil
}

// newSessionID returns a random id of the form agents accept, s-[a-z0-9]+.
func newSessionID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "s-" + hex.EncodeToString(b)
}

func (sm *sessions) perNode() map[string]int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out := map[string]int{}
	for _, l := range sm.live {
		out[l.rec.Node]++
	}
	return out
}

// Channel starts a process of the session on its node. It returns the
// stream that carries its frames and, when the agent opened one, the
// connection that carries its stdin and stdout (nil: they are in frames).
func (l *Lease) Channel(ctx context.Context, req api.ChannelRequest) (net.Conn, net.Conn, error) {
	req.SessionSetup = l.setup
	h := l.sm.s.hub
	req.Data = h.expectData(l.rec.Node)
	defer h.forgetData(req.Data)
	stream, hdr, err := h.upgrade(ctx, l.rec.Node, "/sessions/channel", req)
	if err != nil {
		return nil, nil, err
	}
	if hdr.Get(api.DataModeHeader) != api.DataModeConn {
		return stream, nil, nil
	}
	data, err := h.awaitData(ctx, req.Data)
	if err != nil {
		stream.Close()
		return nil, nil, fmt.Errorf("node %s did not open the channel's data connection: %w", l.rec.NodeName, err)
	}
	return stream, data, nil
}

// Forward connects to host:port as seen from the session's node.
func (l *Lease) Forward(ctx context.Context, host string, port int) (net.Conn, error) {
	c, _, err := l.sm.s.hub.upgrade(ctx, l.rec.Node, "/sessions/forward", api.ForwardRequest{SessionSetup: l.setup, Host: host, Port: port})
	return c, err
}

// Authenticate returns the user a login may act as when it presents the
// key with this fingerprint: the key must belong to the user the login
// names. It records the key's use. A disabled user's key gives the user
// (Disabled set) with the error that refuses it, so that the gateway may
// tell the key's holder why once the key has proved itself, and no one
// else.
func (s *Server) Authenticate(ctx context.Context, login dspool.Login, fingerprint string) (*dspool.User, error) {
	k, err := s.db.KeyByFingerprint(ctx, fingerprint)
	if err != nil {
		return nil, err
	}
	if k.User != login.User {
		return nil, dspool.Errorf(dspool.EUnauthorized, "key %s is not %s's", fingerprint, login.User)
	}
	u, err := s.db.User(ctx, k.User)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return u, disabledError(u.Name)
	}
	_ = s.db.TouchKey(ctx, k.ID, s.cfg.Now())
	return u, nil
}

// decorate adds the live counters to a session read from the store.
func (sm *sessions) decorate(x *dspool.Session) {
	sm.mu.Lock()
	l := sm.live[x.ID]
	conns := 0
	if l != nil {
		conns = l.connections()
	}
	sm.mu.Unlock()
	if l == nil {
		return
	}
	x.Connections = conns
	x.BytesIn, x.BytesOut = l.in.Load(), l.out.Load()
	x.LastActivity = time.Unix(0, l.last.Load()).UTC()
}

// kill ends a live session by id.
func (sm *sessions) kill(id, reason string) bool {
	sm.mu.Lock()
	l := sm.live[id]
	sm.mu.Unlock()
	return l != nil && sm.end(l, reason)
}
