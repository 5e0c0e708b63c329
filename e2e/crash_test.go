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
	requireRoot(t)
	const (
		clients = 500
		killAt  = 100 // acknowledgements before the kill
		admin   = "e2eadm6"
	)
	removeAccountAfter(t, admin)
	dir := tempDir(t)
	data := filepath.Join(dir, "data")
	share := filepath.Join(data, "share")
	addr := freeAddr(t)
	config := writeFile(t, "server-*.yaml", fmt.Sprintf(`listen: %s
data: %s
share: %s
admin: %s
uid_base: %d
node_grace: 30s
kill_grace: 1s
heartbeat: 200ms
`, addr, data, share, admin, uidBase(6)))
	srv := startServer(t, dir, "1", config)

	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatalf("the server wrote no admin token: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	adminAPI := &api.Client{Server: "http://" + addr, Token: strings.TrimSpace(string(tok))}
	if _, err := adminAPI.ApplyPools(ctx, []*dspool.Pool{{Name: "default", Provider: dspool.ProviderStatic,
		Node: dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}, Count: 2}}); err != nil {
		t.Fatalf("apply pool default: %v", err)
	}
	join, err := adminAPI.JoinToken(ctx, "default")
	if err != nil {
		t.Fatalf("join token: %v", err)
	}
	var agents []*agentProc
	for i := 1; i <= 2; i++ {
		adir := filepath.Join(dir, fmt.Sprintf("agent-%d", i))
		if err := os.Mkdir(adir, 0o755); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, startAgent(t, adir, "--server", adminAPI.Server, "--join-token", join.Token,
			"--pool", "default", "--name", fmt.Sprintf("e2e-kill-%d", i), "--share", share,
			"--state", filepath.Join(adir, "state"), "--cpus", "2", "--memory", "2GiB"))
	}
	nodesBefore := waitAPINodes(t, ctx, adminAPI, 2)

	// Every client submits one job with its own idempotency key. The
	// transport kills the server the moment the killAt-th job is
	// acknowledged, so the others are in flight or not yet sent.
	tr := &killingTransport{base: http.DefaultTransport.(*http.Transport).Clone(), killAt: killAt,
		kill: func() { _ = srv.cmd.Process.Kill() }, killed: make(chan struct{})}
	tr.base.MaxIdleConnsPerHost = clients
	cl := &api.Client{Server: adminAPI.Server, Token: adminAPI.Token, HTTP: &http.Client{Transport: tr}}
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
	<-srv.done
	srv2 := startServer(t, dir, "2", config)
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
	acked := map[int64]bool{}
	for _, id := range ids {
		acked[id] = true
	}
	if len(acked) != clients {
		t.Errorf("%d distinct job ids acknowledged to %d clients with distinct keys, want %d", len(acked), clients, clients)
	}

	// Every acknowledged job runs to success, once.
	eventually(t, 3*time.Minute, "every job to finish", func() bool {
		l, err := adminAPI.Jobs(ctx, api.JobQuery{AllUsers: true, Limit: 10000})
		if err != nil {
			return false
		}
		for _, j := range l.Jobs {
			if !j.State.Terminal() {
				return false
			}
		}
		return true
	})
	stored := map[int64]*dspool.Job{}
	var before int64
	for page := 0; ; page++ {
		l, err := adminAPI.Jobs(ctx, api.JobQuery{AllUsers: true, Limit: 100, Before: before})
		if err != nil {
			t.Fatalf("list jobs before %d: %v", before, err)
		}
		for _, j := range l.Jobs {
			if stored[j.ID] != nil {
				t.Errorf("job %d listed twice across pages", j.ID)
			}
			stored[j.ID] = j
		}
		if l.Next == 0 {
			break
		}
		if page > clients {
			t.Fatalf("job list pages never end")
		}
		before = l.Next
	}
	if len(stored) != clients {
		t.Errorf("the server lists %d jobs, want exactly %d: one per idempotency key", len(stored), clients)
	}
	// A client that never heard back submits again with its key after the
	// restart: it gets its job, not a second one.
	for i := 0; i < clients; i += 50 {
		spec := &dspool.JobSpec{Command: []string{"sh", "-c", "echo again >> ran"}, IdempotencyKey: fmt.Sprintf("e2e-kill9-%d", i)}
		j, err := adminAPI.SubmitJob(ctx, spec, 10*time.Second)
		if err != nil {
			t.Errorf("submit again with key %s: %v", spec.IdempotencyKey, err)
		} else if j.ID != ids[i] {
			t.Errorf("submit again with key %s: got job %d, want the first job %d", spec.IdempotencyKey, j.ID, ids[i])
		}
	}
	if l, err := adminAPI.Jobs(ctx, api.JobQuery{AllUsers: true, Limit: 10000}); err != nil || len(l.Jobs) != clients {
		t.Errorf("after submitting again with used keys: %v jobs (%v), want %d", len(l.Jobs), err, clients)
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
		ran := filepath.Join(share, "jobs", itoa(id), "ran")
		b, err := os.ReadFile(ran)
		if err != nil {
			t.Errorf("job %d: %v", id, err)
		} else if string(b) != itoa(id)+"\n" {
			t.Errorf("job %d ran %d times: %s holds %q, want %q", id, strings.Count(string(b), "\n"), ran, b, itoa(id)+"\n")
		}
	}

	for i, a := range agents {
		if a.exited() {
			t.Errorf("agent %d (pid %d) exited while the server was killed and restarted: %v", i+1, a.cmd.Process.Pid, a.cmd.ProcessState)
		}
	}
	nodesAfter := waitAPINodes(t, ctx, adminAPI, 2)
	if a, b := nodeIDs(nodesAfter), nodeIDs(nodesBefore); a != b {
		t.Errorf("nodes after the restart: %s, want the same nodes as before: %s", a, b)
	}
	srv2.stop(t)
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
