package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/lazyregexp"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/store"
	"github.com/hashicorp/yamux"
)

// hub holds one multiplexed connection per agent. Agents dial out to the
// server, so nodes need no inbound port; the server then calls the agent
// over streams of that same connection.
type hub struct {
	s  *Server
	mu sync.Mutex
	// conns are the agents connected now, by node id.
	conns map[string]*agentConn
	// seen is the last contact with each node that has been connected since
	// this server started.
	seen  map[string]time.Time
	users map[string]*dspool.User
	pools map[string]*dspool.Pool
	// data are the data connections session channels wait for, by token.
	data map[string]*pendingData
}

type agentConn struct {
	node   string
	remote string // the address it came from
	pool   string
	sess   *yamux.Session
	client *http.Client
	srv    *http.Server
	hbMu   sync.Mutex // heartbeats of one agent are handled one at a time
	// begun counts the heartbeats begun on this connection: it numbers
	// their replies, and pushes carry it (pushMark).
	begun atomic.Uint64
	boot  string
	state dspool.NodeState
	// stateSet: setState changed state since the connection was
	// attached, which the store's state read after it must not undo.
	stateSet bool
	inv      dspool.Inventory
	usage    dspool.Usage
	sentHdr  bool
	// accounts are the node's (dspool.Node.Accounts), for the scheduler.
	accounts []dspool.HostAccount
}

// alive says whether the connection still answers: a second connection
// with the node's credential is refused while it does, and replaces it
// once it does not (the agent restarted, or its machine did).
func (ac *agentConn) alive() bool {
	res := make(chan error, 1)
	go func() {
		_, err := ac.sess.Ping()
		res <- err
	}()
	select {
	case err := <-res:
		return err == nil
	case <-time.After(3 * time.Second):
		return false
	}
}

func newHub(s *Server) *hub {
	return &hub{s: s, conns: map[string]*agentConn{}, seen: map[string]time.Time{},
		users: map[string]*dspool.User{}, pools: map[string]*dspool.Pool{}, data: map[string]*pendingData{}}
}

// nodeNameRE leaves the bound of length (63) to register, as
// dspool.ValidName does.
var nodeNameRE = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (h *hub) register(w http.ResponseWriter, r *http.Request) {
	var req api.RegisterRequest
	if err := readJSON(r, &req); err != nil {
		h.s.fail(w, r, err)
		return
	}
	secret, _ := api.SplitJoinToken(req.JoinToken)
	pool, err := h.s.db.JoinTokenPool(r.Context(), HashSecret(secret))
	if err != nil {
		h.s.fail(w, r, err)
		return
	}
	if err := h.checkShare(req); err != nil {
		h.s.log.Warn("refused a node whose share is not this pool's", "name", req.Name, "remote", r.RemoteAddr, "err", err)
		h.s.fail(w, r, err)
		return
	}
	if req.Pool != "" && req.Pool != pool {
		h.s.fail(w, r, dspool.Invalid("pool", "this join token is for pool %s, not %s", pool, req.Pool))
		return
	}
	if req.Name == "" {
		req.Name = "node"
	}
	if len(req.Name) > 63 || !nodeNameRE.MatchString(req.Name) {
		h.s.fail(w, r, dspool.Invalid("name", "%q is not a valid node name: letters, digits, '.', '_' and '-', at most 63", req.Name))
		return
	}
	if err := dspool.ValidateLabels("labels", req.Labels); err != nil {
		h.s.fail(w, r, err)
		return
	}
	// A single-use token is spent only by a registration that passes
	// every check above: an agent turned away for its share may try again.
	if _, err := h.s.db.TakeJoinToken(r.Context(), HashSecret(secret)); err != nil {
		h.s.fail(w, r, err)
		return
	}
	id := NewSecret("")[:12]
	name := req.Name
	if existing, _ := h.s.db.Nodes(r.Context(), "", false); existing != nil {
		for _, n := range existing {
			if n.Name == name {
				name = req.Name + "-" + id[:4]
				break
			}
		}
	}
	cred := NewSecret("dspn_")
	n := &dspool.Node{ID: "n-" + id, Name: name, Pool: pool, State: dspool.NodeProvisioning,
		Inventory: req.Inventory, Labels: req.Labels, Version: req.Version, CreatedAt: h.s.cfg.Now()}
	if err := h.s.db.CreateNode(r.Context(), n, HashSecret(cred)); err != nil {
		h.s.fail(w, r, err)
		return
	}
	h.s.log.Info("node registered", "node", n.ID, "name", n.Name, "pool", pool)
	writeJSON(w, http.StatusCreated, api.RegisterResponse{Node: n.ID, Name: n.Name, Pool: pool, Credential: cred})
}

// checkShare refuses a node that does not see the control plane's share:
// its jobs' output would land on the node's own disk, lost to everyone.
func (h *hub) checkShare(req api.RegisterRequest) error {
	want := h.s.cfg.ShareID
	switch {
	case want == "":
		return nil
	case req.ShareID == "":
		return dspool.Invalid("share_id", "the node's share has no %s at its root: nothing is mounted there, or it is not this pool's share. "+
			"Mount the pool's share there (the control plane's is at %s on its machine), then start the agent again", share.IDFile, h.s.cfg.Share)
	case req.ShareID != want:
		return dspool.Invalid("share_id", "the node's share is another pool's (its %s says %s, this pool's says %s): mount this pool's share there", share.IDFile, req.ShareID, want)
	case strings.Contains(req.ShareProblem, share.ErrNoOwners.Error()):
		return dspool.Invalid("share_mode", "%s (a share mounted for one account: SMB or CIFS with uid=, sshfs to an account that is not root, or sshfs with -o default_permissions). "+
			"dspool keeps users' files apart by their owners, so it cannot use such a share: mount it so that owners are kept "+
			"(NFS, SMB with POSIX extensions, sshfs as root with -o allow_other and without default_permissions)", req.ShareProblem)
	case req.ShareProblem != "":
		return dspool.Invalid("share_writable", "the node cannot use its share: %s", req.ShareProblem)
	case !req.ShareWritable:
		return dspool.Invalid("share_writable", "the node cannot write its share (mounted read-only, or for another account): jobs could not write their output; mount it read-write")
	}
	return nil
}

// connect upgrades an authenticated agent's request to the multiplexed
// connection and serves it until it breaks.
func (h *hub) connect(w http.ResponseWriter, r *http.Request) {
	node, err := h.s.db.NodeByCredential(r.Context(), HashSecret(bearer(r)))
	if err != nil {
		h.s.fail(w, r, err)
		return
	}
	if r.Header.Get("Upgrade") != api.AgentUpgrade {
		h.s.fail(w, r, dspool.Invalid("Upgrade", "the agent connection needs Upgrade: %s", api.AgentUpgrade))
		return
	}
	if old := h.conn(node.ID); old != nil && old.alive() {
		h.s.audit(r, "node "+node.Name, dspool.AuditNodeConnect, "node "+node.Name, dspool.AuditFailure,
			"refused a second connection with the node's credential while the node is connected from "+old.remote)
		h.s.fail(w, r, dspool.Errorf(dspool.EConflict, "node %s is connected already (from %s) and answers: a second connection with its credential is refused. "+
			"Stop the other agent, or revoke the node if its credential leaked", node.Name, old.remote))
		return
	}
	w.Header().Set(api.NodeGraceHeader, h.s.cfg.NodeGrace.String())
	if h.s.cfg.LeaderTerm > 0 {
		w.Header().Set(api.LeaderTermHeader, strconv.FormatInt(h.s.cfg.LeaderTerm, 10))
	}
	conn, err := h.s.switchProtocols(w, r, api.AgentUpgrade)
	if err != nil {
		return
	}
	// A large buffer reads bulk session output in few system calls.
	sess, err := yamux.Server(&bufConn{Conn: conn, r: bufio.NewReaderSize(conn, 256<<10)}, api.MuxConfig())
	if err != nil {
		conn.Close()
		return
	}
	ac := &agentConn{node: node.ID, pool: node.Pool, sess: sess, state: node.State, remote: h.s.client(r).Addr}
	ac.client = &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return sess.Open() },
		MaxIdleConnsPerHost: 8,
	}, Timeout: 30 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /heartbeat", func(w http.ResponseWriter, r *http.Request) { h.serveHeartbeat(ac, w, r) })
	ac.srv = &http.Server{Handler: h.s.limitBody(mux), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}

	if old := h.attach(ac); old != nil {
		old.sess.Close()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	h.settle(sctx, ac)
	cancel()
	h.s.metrics.connects.Inc()
	h.s.log.Info("agent connected", "node", node.ID, "name", node.Name, "remote", h.s.client(r).Addr)
	_ = ac.srv.Serve(sess)
	h.detach(ac, node.Name)
}

// attach makes ac its node's connection, and returns the one it replaces.
func (h *hub) attach(ac *agentConn) *agentConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.conns[ac.node]
	h.conns[ac.node] = ac
	h.seen[ac.node] = h.s.cfg.Now()
	return old
}

// settle gives ac, just attached, the node's state as the store has it now:
// the state it was made with was read before the connection was set up,
// and a drain in between (while the node had no connection, so that the
// drain's setState reached none) would otherwise let the scheduler place
// work on the drained node until the agent's first report. A setState
// since the attach is newer, and kept.
func (h *hub) settle(ctx context.Context, ac *agentConn) {
	n, err := h.s.db.Node(ctx, ac.node)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ac.stateSet {
		ac.state = n.State
	}
}

// detach forgets ac, which has ended.
func (h *hub) detach(ac *agentConn, name string) {
	// seen keeps the last heartbeat: a connection that took a while to be
	// found dead must not extend the node's grace.
	h.mu.Lock()
	current := h.conns[ac.node] == ac
	if current {
		delete(h.conns, ac.node)
	}
	h.mu.Unlock()
	h.s.log.Info("agent disconnected", "node", ac.node, "name", name, "current", current)
	// The node's sessions outlive the connection: the agent keeps them,
	// and they end only when the node is lost past its grace (monitorLoop).
}

// switchProtocols answers 101 with the Upgrade protocol and returns the
// connection, reading first what the HTTP server had already buffered. A
// failure is answered (or the connection closed) here. Only agents'
// authenticated requests switch: their connections leave the count of
// their address (LimitListener), so that the agents of a pool that share
// one address are never refused.
func (s *Server) switchProtocols(w http.ResponseWriter, r *http.Request, protocol string) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.fail(w, r, err)
		return nil, err
	}
	exemptFromSource(conn)
	_ = conn.SetDeadline(time.Time{})
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n", protocol)
	// Headers the handler set (w's, which the hijack does not send).
	_ = w.Header().Write(brw)
	fmt.Fprint(brw, "\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return &bufConn{Conn: conn, r: brw.Reader}, nil
}

// bufConn reads first what the HTTP server had already buffered.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// batchedConn is a data connection under TLS whose writes reach the socket
// in one system call each (up to maxBatch bytes), not one per TLS record
// (16 KiB): crypto/tls writes each record on its own, and on this path a
// write of the gateway is typically a whole window of SSH packets.
type batchedConn struct {
	*bufConn
	tc *tls.Conn
	lc *limitConn
}

// batchWrites returns c with its writes batched when it is TLS over a
// limitConn; else c itself.
func batchWrites(c net.Conn) net.Conn {
	bc, ok := c.(*bufConn)
	if !ok {
		return c
	}
	tc, ok := bc.Conn.(*tls.Conn)
	if !ok {
		return c
	}
	lc, ok := limitConnOf(tc)
	if !ok {
		return c
	}
	return &batchedConn{bufConn: bc, tc: tc, lc: lc}
}

func (c *batchedConn) Write(p []byte) (int, error) {
	c.lc.hold()
	n, err := c.tc.Write(p)
	if ferr := c.lc.release(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}

// CloseWrite ends the writing half: of a TCP connection, or (a yamux
// stream's Close is already a half-close) of a stream.
func (c *bufConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ac := range h.conns {
		ac.sess.Close()
	}
}

func (h *hub) connected() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *hub) poolsChanged() {
	h.mu.Lock()
	h.pools = map[string]*dspool.Pool{}
	for _, ac := range h.conns {
		ac.sentHdr = false
	}
	h.mu.Unlock()
}

// lastSeen returns when the node was last heard from, and whether it is
// connected now.
func (h *hub) lastSeen(id string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ac, ok := h.conns[id]; ok {
		now := h.s.cfg.Now()
		last := h.seen[id]
		if now.Sub(last) <= h.s.cfg.NodeGrace {
			return now, true
		}
		// Connected, but no heartbeat for the whole grace: the connection
		// is half-open (a silent partition). Close it; the node is lost
		// like any silent one, and its sessions end with it.
		h.s.log.Warn("agent connection silent past the grace; closing it", "node", id, "last_heartbeat", last)
		go ac.sess.Close()
		return last, false
	}
	t, ok := h.seen[id]
	if !ok {
		t = h.s.started
	}
	return t, false
}

// decorate adds live facts to a node read from the store.
func (h *hub) decorate(n *dspool.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ac, ok := h.conns[n.ID]; ok {
		n.Usage = ac.usage
		t := h.s.cfg.Now().UTC()
		n.LastSeen = &t
	} else if t, ok := h.seen[n.ID]; ok {
		t := t.UTC()
		n.LastSeen = &t
	}
}

// readyNode is a copy of what the scheduler needs of a connected node.
type readyNode struct {
	pool string
	inv  dspool.Inventory
	// accounts: the node has accounts that may hold users' uids.
	accounts bool
}

// ready returns the nodes that can take work now, by id, copied under the
// lock (heartbeats update them concurrently).
func (h *hub) ready() map[string]readyNode {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]readyNode{}
	for id, ac := range h.conns {
		// A node whose share is full takes no new work: a job's output
		// would have nowhere to go.
		if ac.state == dspool.NodeReady && ac.usage.ShareFull() == "" {
			out[id] = readyNode{pool: ac.pool, inv: ac.inv, accounts: len(ac.accounts) > 0}
		}
	}
	return out
}

func (h *hub) conn(id string) *agentConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[id]
}

func (h *hub) pool(ctx context.Context, name string) (*dspool.Pool, error) {
	h.mu.Lock()
	p := h.pools[name]
	h.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := h.s.db.Pool(ctx, name)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.pools[name] = p
	h.mu.Unlock()
	return p, nil
}

func (h *hub) user(ctx context.Context, name string) (*dspool.User, error) {
	h.mu.Lock()
	u := h.users[name]
	h.mu.Unlock()
	if u != nil {
		return u, nil
	}
	u, err := h.s.db.User(ctx, name)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.users[name] = u
	h.mu.Unlock()
	return u, nil
}

// spec turns a placed job into what its agent needs to start it.
func (h *hub) spec(ctx context.Context, j *dspool.Job) (*api.AttemptSpec, error) {
	u, err := h.user(ctx, j.User)
	if err != nil {
		return nil, fmt.Errorf("user of job %d: %w", j.ID, err)
	}
	p, err := h.pool(ctx, j.Pool)
	if err != nil {
		return nil, fmt.Errorf("pool of job %d: %w", j.ID, err)
	}
	wd := share.JobDir(j.ID)
	if j.Workdir != "" {
		wd = path.Join(share.Home(u.Name), j.Workdir)
	}
	spec := &api.AttemptSpec{
		AttemptRef: api.AttemptRef{Job: j.ID, Attempt: j.Attempt},
		Name:       j.Name, Pool: j.Pool,
		User:    api.RunAs{Name: u.Name, UID: u.UID, GID: u.GID},
		Command: j.Command, Env: j.Env,
		Workdir: wd, Home: share.Home(u.Name), JobDir: share.JobDir(j.ID), Log: share.Log(j.ID, j.Attempt),
		CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUIndices, TimeLimit: j.TimeLimit,
		KillGrace: dspool.Duration(h.s.cfg.KillGrace), OutputLimit: p.OutputLimit,
		WorkToken: h.s.workTokens.attempt(j.ID, j.Attempt, u.Name),
		ArrayID:   j.ArrayID,
	}
	if j.ArrayIndex != nil {
		spec.ArrayIndex = *j.ArrayIndex
	}
	if j.Preemptible && p.Preemption != nil {
		spec.PreemptGrace = p.Preemption.Grace
	}
	spec.Image, spec.ImageFile, spec.ImageNetwork = attemptImage(j, p, spec.Home)
	h.s.makeUserDir(ctx, u.Name, spec.Home, 0o700)
	h.s.makeUserDir(ctx, u.Name, spec.JobDir, 0o750)
	// The values are read at each start, so a retry gets a secret's value
	// of the moment, and a secret deleted since submission stops the job.
	spec.Secrets, err = h.s.openSecrets(ctx, j.User, j.Secrets, fmt.Sprintf("job %d attempt %d on node %s", j.ID, j.Attempt, j.Node))
	if err != nil {
		return nil, err
	}
	return spec, nil
}

// attemptImage is the image an attempt runs in: the job's, else its
// pool's. A file of the job's is relative to the user's home, one of the
// pool's to the share's root; absolute paths go as they are, and the agent
// checks that they are on the share.
func attemptImage(j *dspool.Job, p *dspool.Pool, home string) (image string, file bool, network string) {
	image, base := j.Image, home
	if image == "" {
		image, base = p.Image, ""
	}
	return resolveImage(image, base, p)
}

// sessionImage is the image a session of pool p runs in: the pool's.
func sessionImage(p *dspool.Pool) (image string, file bool, network string) {
	return resolveImage(p.Image, "", p)
}

// resolveImage is image as an agent takes it, a relative file resolved
// beneath base.
func resolveImage(image, base string, p *dspool.Pool) (string, bool, string) {
	var network string
	if image == "" {
		return "", false, ""
	}
	network = p.ImageNetwork
	if network == "" {
		network = dspool.ImageNetworkHost
	}
	if !dspool.ImageIsFile(image) {
		return image, false, network
	}
	if !path.IsAbs(image) {
		image = path.Join(base, image)
	}
	return image, true, network
}

// startFailed ends an attempt that cannot start for a reason no retry of
// the push repairs (a secret it asks for is gone), as the agent would.
func (h *hub) startFailed(ctx context.Context, j *dspool.Job, why string) {
	h.logStartError(ctx, j, why)
	changed, err := h.s.db.ApplyReports(ctx, j.Node, []store.Report{startFailure(j, why, h.s.cfg.Now())})
	if err != nil {
		h.s.log.Error("record an attempt that could not start", "job", j.ID, "attempt", j.Attempt, "err", err)
		return
	}
	for _, id := range changed {
		h.s.notify(id)
	}
	h.s.Kick()
}

// logStartError writes why an attempt could not start into its log, where
// users look first (`dspool job logs`), as the agent does for the starts
// that fail on the node: owned by the job's user when the control plane
// runs as root. A log that cannot be written is left out.
func (h *hub) logStartError(ctx context.Context, j *dspool.Job, why string) {
	root := h.s.cfg.Share
	if root == "" {
		return
	}
	o, err := h.s.shareOwner(ctx, j.User)
	if err != nil {
		return
	}
	err = share.WriteLog(root, share.JobDir(j.ID), share.Log(j.ID, j.Attempt), o,
		fmt.Sprintf("dspool: the job could not start: %s\n", why))
	if err != nil {
		h.s.log.Warn("write why an attempt could not start into its log", "job", j.ID, "attempt", j.Attempt, "err", err)
	}
}

func startFailure(j *dspool.Job, why string, at time.Time) store.Report {
	return store.Report{Job: j.ID, Attempt: j.Attempt, At: at,
		Result: &dspool.AttemptResult{Reason: dspool.ReasonStartError, Message: why}}
}

// facts returns what is known of each connected node, by id.
func (h *hub) facts() map[string]nodeFacts {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]nodeFacts, len(h.conns))
	for id, ac := range h.conns {
		out[id] = nodeFacts{state: ac.state, inv: ac.inv, usage: ac.usage}
	}
	return out
}

// setState sets a connected node's state (draining: no new work).
func (h *hub) setState(id string, st dspool.NodeState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ac := h.conns[id]; ac != nil {
		ac.state, ac.stateSet = st, true
	}
}

// pauseHeartbeats holds off a connected node's heartbeats, which write back
// the state they read, until the returned function is called: a change of
// its state between the two is not undone.
func (h *hub) pauseHeartbeats(id string) func() {
	ac := h.conn(id)
	if ac == nil {
		return func() {}
	}
	ac.hbMu.Lock()
	return ac.hbMu.Unlock
}

// disconnect closes a node's connection, if it has one.
func (h *hub) disconnect(id string) {
	h.mu.Lock()
	ac := h.conns[id]
	h.mu.Unlock()
	if ac != nil {
		ac.sess.Close()
	}
}
