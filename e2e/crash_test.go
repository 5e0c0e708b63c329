package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestServerKill9 kills the control plane with SIGKILL while 500 clients
// submit jobs, and starts it again on the same store: every submission ends
// acknowledged, each job exists once and runs exactly once, and the agents
// ride it out without restarting.
func TestServerKill9(t *testing.T) {
	const clients = 500
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := startServerPool(t, ctx)
	// The first job creates the user's OS account alone (a first job on two
	// agents at once is TestNewUserOnTwoAgents).
	first, err := p.admin.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, CPUs: 100, Memory: 64 << 20}, 0)
	if err != nil {
		t.Fatalf("first job: %v", err)
	}
	if j := waitAPIJob(t, ctx, p.admin, first.ID); j.State != dspool.JobSucceeded {
		t.Fatalf("first job: state %s, reason %s, message %q; want succeeded", j.State, j.Reason, j.Message)
	}

	ids := p.submitThroughKill(t, ctx, clients, 100)
	acked := map[int64]bool{}
	for _, id := range ids {
		acked[id] = true
	}
	if len(acked) != clients {
		t.Errorf("%d distinct job ids acknowledged to %d clients with distinct keys, want %d", len(acked), clients, clients)
	}
	var pending []int64
	if !poll(3*time.Minute, func() bool {
		pending = pending[:0]
		for _, j := range listJobs(t, ctx, p.admin) {
			if !j.State.Terminal() {
				pending = append(pending, j.ID)
			}
		}
		return len(pending) == 0
	}) {
		t.Fatalf("after 3 minutes %d jobs have not finished: %v", len(pending), pending)
	}

	stored := listJobs(t, ctx, p.admin)
	if stored[first.ID] == nil {
		t.Errorf("the first job %d is not in the server's list", first.ID)
	}
	delete(stored, first.ID)
	if len(stored) != clients {
		t.Errorf("the server lists %d jobs besides the first, want exactly %d: one per idempotency key", len(stored), clients)
	}
	for id := range acked {
		j := stored[id]
		if j == nil {
			t.Errorf("acknowledged job %d is not in the server's list", id)
			continue
		}
		if j.State != dspool.JobSucceeded || j.Attempt != 1 {
			t.Errorf("job %d: state %s, attempt %d, reason %q, message %q; want succeeded at attempt 1",
				id, j.State, j.Attempt, j.Reason, j.Message)
		}
		ran := filepath.Join(p.share, "jobs", itoa(id), "ran")
		if b, err := os.ReadFile(ran); err != nil {
			t.Errorf("job %d: %v", id, err)
		} else if string(b) != itoa(id)+"\n" {
			t.Errorf("job %d ran %d times: %s holds %q, want %q", id, strings.Count(string(b), "\n"), ran, b, itoa(id)+"\n")
		}
	}

	// A client that never heard back submits again with its key after the
	// restart: it gets its job, not a second one.
	for i := 0; i < clients; i += 50 {
		spec := &dspool.JobSpec{Command: []string{"sh", "-c", "echo again >> ran"}, IdempotencyKey: fmt.Sprintf("e2e-kill9-%d", i)}
		j, err := p.admin.SubmitJob(ctx, spec, 10*time.Second)
		if err != nil {
			t.Errorf("submit again with key %s: %v", spec.IdempotencyKey, err)
		} else if j.ID != ids[i] {
			t.Errorf("submit again with key %s: got job %d, want the first job %d", spec.IdempotencyKey, j.ID, ids[i])
		}
	}
	if n := len(listJobs(t, ctx, p.admin)); n != clients+1 {
		t.Errorf("after submitting again with used keys the server lists %d jobs, want %d as before", n, clients+1)
	}

	for i, a := range p.agents {
		if a.exited() {
			t.Errorf("agent %d (pid %d) exited while the server was killed and restarted: %v", i+1, a.cmd.Process.Pid, a.cmd.ProcessState)
		}
	}
	if a, b := nodeIDs(waitAPINodes(t, ctx, p.admin, 2)), nodeIDs(p.nodes); a != b {
		t.Errorf("nodes after the restart: %s, want the same nodes as before: %s", a, b)
	}
}

// serverPool is a `dspool server` with two agents of its own, each a
// process the test started.
type serverPool struct {
	dir, share, config string
	srv                *serverProc
	admin              *api.Client
	agents             []*agentProc
	nodes              []*dspool.Node // ready at the start
}

// startServerPool runs `dspool server` and two agents that join its static
// pool "default".
func startServerPool(t *testing.T, ctx context.Context) *serverPool {
	t.Helper()
	const admin = "e2eadm6"
	removeAccountAfter(t, admin)
	p := &serverPool{dir: tempDir(t)}
	data := filepath.Join(p.dir, "data")
	p.share = filepath.Join(data, "share")
	addr := freeAddr(t)
	p.config = writeFile(t, "server-*.yaml", fmt.Sprintf(`listen: %s
ssh_listen: "off"
data: %s
share: %s
admin: %s
uid_base: %d
node_grace: 30s
kill_grace: 1s
heartbeat: 200ms
`, addr, data, p.share, admin, uidBase(6)))
	p.srv = startServer(t, p.dir, "1", p.config)
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatalf("the server wrote no admin token: %v", err)
	}
	testCAs.trust(t, filepath.Join(data, "tls", "ca.crt"))
	p.admin = &api.Client{Server: "https://" + addr, Token: strings.TrimSpace(string(tok)), HTTP: &http.Client{}}
	if _, err := p.admin.ApplyPools(ctx, []*dspool.Pool{{Name: "default", Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}, Count: 2}}); err != nil {
		t.Fatalf("apply pool default: %v", err)
	}
	join, err := p.admin.JoinToken(ctx, "default")
	if err != nil {
		t.Fatalf("join token: %v", err)
	}
	for i := 1; i <= 2; i++ {
		dir := filepath.Join(p.dir, fmt.Sprintf("agent-%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p.agents = append(p.agents, startAgent(t, dir, "--server", p.admin.Server, "--join-token", join.Token,
			"--pool", "default", "--name", fmt.Sprintf("e2e-kill-%d", i), "--share", p.share,
			"--state", filepath.Join(dir, "state"), "--cpus", "2", "--memory", "2GiB"))
	}
	p.nodes = waitAPINodes(t, ctx, p.admin, 2)
	return p
}

// submitThroughKill has clients submit one job each, concurrently, each
// with its own idempotency key; it kills the server with SIGKILL the moment
// the killAt-th job is acknowledged, so that the others are in flight or not
// yet sent, and starts it again. It returns the job id each client got.
func (p *serverPool) submitThroughKill(t *testing.T, ctx context.Context, clients, killAt int) []int64 {
	t.Helper()
	old := p.srv
	tr := &killingTransport{base: http.DefaultTransport.(*http.Transport).Clone(), killAt: int64(killAt),
		kill: func() { _ = old.cmd.Process.Kill() }, killed: make(chan struct{})}
	tr.base.MaxIdleConnsPerHost = clients
	cl := &api.Client{Server: p.admin.Server, Token: p.admin.Token, HTTP: &http.Client{Transport: tr}}
	ids := make([]int64, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := &dspool.JobSpec{Command: []string{"sh", "-c", "echo $DSPOOL_JOB_ID >> ran"},
				CPUs: 100, Memory: 64 << 20, IdempotencyKey: fmt.Sprintf("e2e-kill9-%d", i)}
			j, err := cl.SubmitJob(ctx, spec, 60*time.Second)
			if err == nil {
				ids[i] = j.ID
			}
			errs[i] = err
		}()
	}
	select {
	case <-tr.killed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%d of %d submissions acknowledged in 2 minutes: the server was never killed", tr.acked.Load(), killAt)
	}
	<-old.done
	p.srv = startServer(t, p.dir, "2", p.config)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: submission not acknowledged: %v", i, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("server killed after %d acknowledgements; %d requests broke on the way and were retried; %d retries answered with the job stored before the kill",
		killAt, tr.broken.Load(), tr.replayed.Load())
	if tr.broken.Load() == 0 {
		t.Errorf("no submission was in flight when the server was killed: the test proved nothing")
	}
	return ids
}

// listJobs lists every user's jobs by id, a page at a time, failing the
// test if a job shows on two pages.
func listJobs(t *testing.T, ctx context.Context, cl *api.Client) map[int64]*dspool.Job {
	t.Helper()
	all := map[int64]*dspool.Job{}
	var before int64
	for {
		l, err := cl.Jobs(ctx, api.JobQuery{AllUsers: true, Limit: 100, Before: before})
		if err != nil {
			t.Fatalf("list jobs before %d: %v", before, err)
		}
		for _, j := range l.Jobs {
			if all[j.ID] != nil {
				t.Fatalf("job %d listed twice across pages", j.ID)
			}
			all[j.ID] = j
		}
		if l.Next == 0 {
			return all
		}
		if l.Next >= before && before != 0 {
			t.Fatalf("job list: page before %d points to the next page before %d: pages never end", before, l.Next)
		}
		before = l.Next
	}
}

// killingTransport counts acknowledged submissions and calls kill, once,
// when killAt of them have been answered.
type killingTransport struct {
	base     *http.Transport
	killAt   int64
	kill     func()
	killed   chan struct{}
	once     sync.Once
	acked    atomic.Int64 // submissions answered 2xx
	replayed atomic.Int64 // ... of which with an existing job (200, not 201)
	broken   atomic.Int64 // requests that got no answer at all
}

func (k *killingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := k.base.RoundTrip(req)
	if req.Method != "POST" || req.URL.Path != "/api/v1/jobs" {
		return resp, err
	}
	if err != nil {
		k.broken.Add(1)
		return resp, err
	}
	if resp.StatusCode == http.StatusOK {
		k.replayed.Add(1)
	}
	if resp.StatusCode/100 == 2 && k.acked.Add(1) == k.killAt {
		k.once.Do(func() { k.kill(); close(k.killed) })
	}
	return resp, err
}

// serverProc is a `dspool server` the test started.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  string
	once sync.Once
}

// startServer runs `dspool server --config config`, logging to files named
// after run, and waits until it listens.
func startServer(t *testing.T, dir, run, config string) *serverProc {
	t.Helper()
	out := filepath.Join(dir, "server-"+run+".out")
	s := &serverProc{done: make(chan struct{}), err: filepath.Join(dir, "server-"+run+".err")}
	s.cmd = startProc(t, nil, out, s.err, "server", "--config", config)
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", s.err, tail(s.err, 4000))
		}
		s.stop(t)
	})
	eventually(t, 30*time.Second, "dspool server to listen", func() bool {
		select {
		case <-s.done:
			t.Fatalf("dspool server exited early: %v\n%s", s.cmd.ProcessState, tail(s.err, 4000))
		default:
		}
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), "dspool server listening on ")
	})
	return s
}

// stop stops the server as SIGINT does and waits for it.
func (s *serverProc) stop(t *testing.T) {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Errorf("dspool server did not exit within 30s of SIGINT; killing it")
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitAPINodes waits until want nodes are ready and connected.
func waitAPINodes(t *testing.T, ctx context.Context, cl *api.Client, want int) []*dspool.Node {
	t.Helper()
	var ready []*dspool.Node
	eventually(t, 30*time.Second, fmt.Sprintf("%d ready nodes", want), func() bool {
		nodes, err := cl.Nodes(ctx, "")
		ready = connectedReady(nodes)
		return err == nil && len(ready) == want
	})
	return ready
}

func nodeIDs(nodes []*dspool.Node) string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return strings.Join(ids, ",")
}
