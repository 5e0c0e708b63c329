package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
	"golang.org/x/crypto/ssh"
)

// filled is the first part's pool: `dspool server` with its SSH gateway,
// two `dspool agent` processes, the jobs and the users' sessions.
type filled struct {
	p      *plane
	agents []*proc
	ssh    []*proc // the clients holding the sessions until the first kill
	users  []string
	queued int64     // a job that stays queued
	up     time.Time // when the agents were connected
}

// The pools: "default" runs jobs and sessions on the two agents; "hold"
// has no machine, so its jobs stay queued.
func pools() []*dspool.Pool {
	return []*dspool.Pool{
		{Name: dspool.DefaultPool, Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 8000, Memory: 16 << 30}, Count: 2,
			Work:     []dspool.Work{dspool.WorkBatch, dspool.WorkInteractive},
			Sessions: &dspool.SessionSpec{CPUs: 100, Memory: 64 << 20}},
		{Name: "hold", Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Count: 1,
			Work: []dspool.Work{dspool.WorkBatch}},
	}
}

// fill starts the first part's pool and fills its store.
func fill(ctx context.Context, bin, dir string, n Sizes) (f *filled, err error) {
	f = &filled{}
	for i := range n.Sessions {
		f.users = append(f.users, fmt.Sprintf("%s%03d", userPrefix, i+1))
	}
	if _, err := os.Stat(openssh.Client); err != nil && n.Sessions > 0 {
		return nil, fmt.Errorf("the sessions are opened with the OpenSSH client, and %s is missing: install it (apt-get install openssh-client)", openssh.Client)
	}
	for _, u := range append([]string{benchAdmin}, f.users...) {
		if host.UserExists(u) {
			return nil, fmt.Errorf("this machine has an account %s already (left by an earlier run?): the agents would refuse to run its sessions with dspool's uid; remove it with `userdel %s`", u, u)
		}
	}
	base := host.FreeUIDRange(63000, n.Sessions+10)
	if f.p, err = startPlane(ctx, bin, filepath.Join(dir, "sessions"), true, base); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	cl := f.p.admin
	if _, err := cl.ApplyPools(ctx, pools()); err != nil {
		return f, fmt.Errorf("apply the pools: %w", err)
	}
	tok, err := cl.JoinToken(ctx, dspool.DefaultPool)
	if err != nil {
		return f, fmt.Errorf("join token: %w", err)
	}
	for i := range 2 {
		name := fmt.Sprintf("rs-%d", i+1)
		a, err := startProc(name, filepath.Join(f.p.dir, name+".log"), []string{"DSPOOL_JOIN_TOKEN=" + tok.Token}, bin, "agent",
			"--server", f.p.url(), "--pool", dspool.DefaultPool, "--name", name, "--share", f.p.share,
			"--state", filepath.Join(f.p.dir, name), "--cpus", "8", "--memory", "16GiB", "--gpus", "0")
		if err != nil {
			return f, err
		}
		f.agents = append(f.agents, a)
	}
	if err := waitNodes(ctx, cl, 2); err != nil {
		return f, err
	}
	f.up = time.Now()
	host.Logf("dspool server at %s with 2 agents; %d users, %d jobs", f.p.url(), n.Sessions, n.Queued+n.Done+n.Running)
	if err := f.jobs(ctx, n); err != nil {
		return f, err
	}
	if err := f.sessions(ctx, n); err != nil {
		return f, err
	}
	return f, nil
}

// jobs submits the queued, finished and running jobs through the API.
func (f *filled) jobs(ctx context.Context, n Sizes) error {
	cl := f.p.admin
	submit := func(count, conc int, spec dspool.JobSpec, each func(*dspool.Job) error) error {
		var next atomic.Int64
		errs := make([]error, conc)
		var wg sync.WaitGroup
		for w := range conc {
			wg.Go(func() {
				for next.Add(1) <= int64(count) && errs[w] == nil {
					s := spec
					j, err := cl.SubmitJob(ctx, &s, 0)
					if err == nil && each != nil {
						err = each(j)
					}
					errs[w] = err
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	t0 := time.Now()
	var first atomic.Int64
	err := submit(n.Queued, 16, dspool.JobSpec{Pool: "hold", Command: []string{"true"}, CPUs: 1000, Memory: 64 << 20}, func(j *dspool.Job) error {
		first.CompareAndSwap(0, j.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("submit the queued jobs: %w", err)
	}
	f.queued = first.Load()
	host.Logf("%d jobs queued in %.1f s", n.Queued, time.Since(t0).Seconds())
	err = submit(n.Done, 8, dspool.JobSpec{Command: []string{"true"}, CPUs: 100, Memory: 32 << 20}, func(j *dspool.Job) error {
		w, err := cl.WaitJob(ctx, j.ID, time.Minute)
		if err == nil && w.State != dspool.JobSucceeded {
			err = fmt.Errorf("job %d ended %s (%s): %s", j.ID, w.State, w.Reason, w.Message)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("run the finished jobs: %w", err)
	}
	if err := submit(n.Running, 4, dspool.JobSpec{Command: []string{"sleep", "100000"}, CPUs: 100, Memory: 32 << 20}, nil); err != nil {
		return fmt.Errorf("submit the running jobs: %w", err)
	}
	return host.Poll(ctx, time.Minute, 100*time.Millisecond, func() (bool, error) {
		l, err := cl.Jobs(ctx, api.JobQuery{States: []string{string(dspool.JobRunning)}, AllUsers: true, Limit: 1000})
		return err == nil && len(l.Jobs) == n.Running, nil
	})
}

// sessions creates the users, each with a key, and opens each one's
// session with the OpenSSH client through the gateway, running a command
// that lasts; the clients hold the sessions until the first kill drops
// their connections.
func (f *filled) sessions(ctx context.Context, n Sizes) error {
	t0 := time.Now()
	port := f.p.sshAddr[strings.LastIndex(f.p.sshAddr, ":")+1:]
	errs := make([]error, len(f.users))
	clients := make([]*proc, len(f.users))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, name := range f.users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			clients[i], errs[i] = f.openSession(ctx, name, port)
		})
	}
	wg.Wait()
	for _, c := range clients {
		if c != nil {
			f.ssh = append(f.ssh, c)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("open the sessions: %w", err)
	}
	host.Logf("%d sessions open in %.1f s", n.Sessions, time.Since(t0).Seconds())
	return nil
}

func (f *filled) openSession(ctx context.Context, name, port string) (*proc, error) {
	cl := f.p.admin
	if _, err := cl.CreateUser(ctx, api.UserCreate{Name: name}); err != nil {
		return nil, fmt.Errorf("create user %s: %w", name, err)
	}
	key := filepath.Join(f.p.dir, "keys", name)
	pub, err := writeKey(key)
	if err != nil {
		return nil, err
	}
	if _, err := cl.AddKey(ctx, name, pub); err != nil {
		return nil, fmt.Errorf("add a key for %s: %w", name, err)
	}
	var p0 int
	fmt.Sscan(port, &p0)
	ep := openssh.Endpoint{User: name, Host: "127.0.0.1", Port: p0, Key: key}
	out := filepath.Join(f.p.dir, "keys", name+".out")
	c, err := startProc("ssh "+name, out, nil, openssh.Client, ep.Args("ERROR", "", "echo $DSPOOL_SESSION; exec sleep 100000")...)
	if err != nil {
		return nil, err
	}
	err = host.Poll(ctx, time.Minute, 20*time.Millisecond, func() (bool, error) {
		b, _ := os.ReadFile(out)
		if strings.HasPrefix(string(b), "s-") {
			return true, nil
		}
		select {
		case <-c.done:
			return false, errors.New("ssh exited")
		default:
			return false, nil
		}
	})
	if err != nil {
		c.stop(syscall.SIGKILL, time.Second)
		return nil, fmt.Errorf("ssh %s@127.0.0.1 -p %d printed no session id: %w: %s", name, p0, err, tailFile(out, 3))
	}
	return c, nil
}

// writeKey writes a new ed25519 key to path (OpenSSH's format, 0600) and
// returns its public key as authorized_keys holds it.
func writeKey(path string) (string, error) {
	pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "dspool-bench")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	pub, err := ssh.NewPublicKey(pubKey)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), nil
}

// close stops the clients, the agents (which end the sessions and jobs
// they run) and the server, and removes the accounts the agents made.
func (f *filled) close() {
	for _, c := range f.ssh {
		c.stop(syscall.SIGKILL, time.Second)
	}
	for _, a := range f.agents {
		a.stop(syscall.SIGTERM, 30*time.Second)
	}
	if f.p != nil {
		f.p.stop()
	}
	for _, u := range append([]string{benchAdmin}, f.users...) {
		if host.UserExists(u) {
			host.RemoveUser(u)
			_ = exec.Command("groupdel", u).Run()
		}
	}
}

// waitNodes waits until want nodes are ready.
func waitNodes(ctx context.Context, cl *api.Client, want int) error {
	err := host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		nodes, err := cl.Nodes(ctx, "")
		ready := 0
		for _, nd := range nodes {
			if nd.State == dspool.NodeReady {
				ready++
			}
		}
		return err == nil && ready >= want, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %d ready nodes: %w", want, err)
	}
	return nil
}
