package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	chaosLong = flag.Bool("chaos.long", false, "TestChaos: the long run (50 kill -9s of the control plane, 20 of an agent, 10 link cuts) instead of the short one")
	chaosSeed = flag.Uint64("chaos.seed", 0, "TestChaos: the seed of its random choices (0: a new one, printed)")
)

// chaosGrace is the node grace of TestChaos: longer than a restart of the
// control plane takes on a loaded machine, so that kill -9s of it end no
// attempt or session. A link cut past it (and the kill grace, and the
// margin) has its node's attempts retried.
const chaosGrace = 15 * time.Second

// TestChaos keeps a pool busy while it disrupts it at random moments:
// kill -9 of `dspool up` (started again on the same data, it adopts its
// agents), kill -9 of an agent, cuts of an agent's link. All along, jobs
// are submitted through the API, a Jupyter kernel counts in a thread, and
// tmux runs a loop in an SSH session. Afterwards every acknowledged job
// exists once and succeeded, no two attempts of a job ran at once, no job
// ran to its end twice, the kernel kept counting in the same process, tmux
// runs on in the same session, no process of a dspool user runs outside a
// live attempt or session, and no log shows a panic.
//
// The pool: "default", the one local node of `dspool up`, hosts the
// sessions and is disrupted only by the control plane's kills (the kill of
// its agent ends its sessions: decision 0016); "batch", two more local
// nodes, whose agents are killed; "ext", a node whose agent the test runs,
// joined through a proxy that cuts its link, and which is killed too.
func TestChaos(t *testing.T) {
	requireRoot(t)
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	plan := map[string]int{"up": 4, "agent": 3, "cut": 2}
	if *chaosLong {
		plan = map[string]int{"up": 50, "agent": 20, "cut": 10}
	}
	t.Logf("chaos: seed %d (rerun with -args -chaos.seed=%d)", seed, seed)
	c := newChaos(t, seed)
	began := time.Now()
	c.plan = plan
	c.run()
	c.drainAndCheck(began)
	c.stopAndCheck()
}

// chaos is TestChaos's pool and what it keeps and counts.
type chaos struct {
	t      *testing.T
	rng    *rand.Rand
	seed   uint64
	cfg    upConfig
	up     *upProc
	ups    []*upProc // every run, for their logs
	local  []string  // the local agents' state directories
	ext    *chaosExt
	admin  string // the admin's token
	jobs   *submitter
	kernel *chaosKernel   // nil without Jupyter
	tmux   *chaosTmux     // nil without ssh or tmux
	users  []int          // uids of the dspool users
	plan   map[string]int // disruptions to make, by kind
	done   map[string]int // ... made
	// reconnect: the logs of killed agents, each with the connections it
	// told of before the kill.
	reconnect map[string]int
	// hits are when the disruptions of each node began, by node name.
	hits map[string][]time.Time
	// procsSeen counts the processes of dspool users the orphan check
	// looked at.
	procsSeen int
}

// chaosExt is the ext node's agent, which the test starts again after it
// kills it.
type chaosExt struct {
	proxy *linkProxy
	args  []string
	agent *agentProc
	logs  []string
}

func (e *chaosExt) start(t *testing.T) {
	dir := tempDir(t)
	e.agent = startAgent(t, dir, e.args...)
	e.logs = append(e.logs, e.agent.stderr, filepath.Join(dir, "agent.out"))
	t.Logf("chaos: the ext node's agent is pid %d, logging to %s", e.agent.cmd.Process.Pid, e.agent.stderr)
}

func newChaos(t *testing.T, seed uint64) *chaos {
	c := &chaos{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0)), done: map[string]int{}, reconnect: map[string]int{}, hits: map[string][]time.Time{}}
	// Fixed addresses: the notebook's URL, the agents' and the clients'
	// server stay the same across restarts.
	listen, sshListen := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	c.cfg = upConfig{UIDBase: uidBase(160), Args: []string{"--node-grace", chaosGrace.String(), "--listen", listen, "--ssh-listen", sshListen}}
	c.up = startUp(t, c.cfg)
	c.ups = append(c.ups, c.up)
	c.cfg.Data, c.cfg.Login = c.up.Data, c.up.Login
	c.admin = c.up.adminToken(t)
	applyPool(t, c.up, `pools:
  - name: batch
    provider: local
    node: {cpus: 1, memory: 1GiB}
    count: 2
    work: [batch]
  - name: ext
    provider: static
    node: {cpus: 1, memory: 1GiB}
    count: 1
    work: [batch]
`)
	c.local = []string{filepath.Join(c.up.Data, "agents", "default-1"), filepath.Join(c.up.Data, "agents", "batch-1"), filepath.Join(c.up.Data, "agents", "batch-2")}
	join := strings.TrimSpace(cliOK(t, c.up.env(), "pool", "join-token", "ext"))
	c.ext = &chaosExt{proxy: startLinkProxy(t, listen)}
	c.ext.args = []string{"--server", "https://" + c.ext.proxy.addr(), "--join-token", join, "--pool", "ext", "--name", "chaos-ext",
		"--share", c.up.Share, "--state", filepath.Join(tempDir(t), "state"), "--cpus", "1", "--memory", "1GiB"}
	c.ext.start(t)
	c.cfg.Ready = 4
	c.up.waitNodes(t, "", c.cfg.Ready)
	t.Cleanup(func() {
		// Whatever a failed test left running.
		for _, s := range c.local {
			for _, pid := range agentPIDs(s) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	worker, token := c.up.createUser(t, "e2echaos160j")
	c.users = append(c.users, runsAs(worker))
	c.jobs = newSubmitter(c.up, token, fmt.Sprintf("chaos-%d", seed), seed, "batch", "ext")
	if haveJupyter() {
		ada, adaTok := c.up.createUser(t, "e2echaos160a")
		c.users = append(c.users, runsAs(ada))
		c.kernel = startChaosKernel(t, c.up, ada, adaTok, fmt.Sprintf("m%d", seed))
	} else {
		t.Log("chaos: Jupyter is not installed, so no kernel counts through the disruptions: " + noJupyter)
	}
	_, errSSH := exec.LookPath("ssh")
	_, errTmux := exec.LookPath("tmux")
	if errSSH == nil && errTmux == nil {
		bob := c.up.sshUser(t, "e2echaos160b")
		c.users = append(c.users, runsAs(bob.User))
		c.tmux = startChaosTmux(t, c.up, bob)
	} else {
		t.Logf("chaos: no SSH session with tmux runs through the disruptions (apt-get install openssh-client tmux): %v %v", errSSH, errTmux)
	}
	return c
}

// run submits jobs all along and makes the disruptions of the plan, in an
// order and at moments drawn from the seed. After most it waits for the
// pool to be whole again and checks the kernel and tmux; one in three is
// followed by the next at once, while the pool recovers from it.
func (c *chaos) run() {
	t := c.t
	var order []string
	for _, kind := range []string{"up", "agent", "cut"} {
		for range c.plan[kind] {
			order = append(order, kind)
		}
	}
	c.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	// Cuts alternate a short one (within the grace: nothing is retried)
	// and a long one (past it: the node's attempts are retried), in an
	// order of the seed's.
	long := c.rng.IntN(2) == 0

	ctx, stop := context.WithCancel(context.Background())
	submitted := make(chan struct{})
	go func() { defer close(submitted); c.jobs.run(ctx, 600*time.Millisecond) }()
	defer func() { stop(); <-submitted }()

	var began time.Time
	var whats []string
	for _, kind := range order {
		if c.done[kind] == c.plan[kind] {
			continue // made already, within another
		}
		if len(whats) == 0 {
			// A random moment: the pool is busy meanwhile.
			time.Sleep(time.Duration(1000+c.rng.IntN(3000)) * time.Millisecond)
			began = time.Now()
		}
		t.Logf("chaos: %s at %s", kind, time.Now().Format("15:04:05.000"))
		var what string
		switch kind {
		case "up":
			what = c.killUp()
		case "agent":
			what = c.killAgent()
		case "cut":
			what = c.cutLink(long)
			long = !long
		}
		whats = append(whats, what)
		if c.rng.IntN(3) != 0 {
			c.settle(strings.Join(whats, ", then "), began)
			whats = whats[:0]
		}
	}
	if len(whats) > 0 {
		c.settle(strings.Join(whats, ", then "), began)
	}
}

// made counts the disruptions made so far.
func (c *chaos) made() int { return c.done["up"] + c.done["agent"] + c.done["cut"] }

// settle waits for the link to heal and the killed agents to connect
// again, then for every node to be ready, and checks the kernel and tmux.
func (c *chaos) settle(what string, began time.Time) {
	t := c.t
	c.ext.proxy.waitHealed()
	for log, n := range c.reconnect {
		eventually(t, 30*time.Second, "a killed agent to connect again", func() bool { return connects(log) > n })
	}
	clear(c.reconnect)
	healed := time.Now()
	c.up.waitNodes(t, "", c.cfg.Ready)
	whole := time.Since(began)
	if c.kernel != nil {
		if bad := c.kernel.check(t); bad != "" {
			c.fault(what, bad)
		}
	}
	if c.tmux != nil {
		if bad := c.tmux.check(healed); bad != "" {
			c.fault(what, bad)
		}
	}
	t.Logf("chaos: %d: %s; the pool was whole again %s after it began", c.made(), what, whole.Round(time.Millisecond))
}

func (c *chaos) fault(what, bad string) {
	c.t.Errorf("after disruption %d (%s): %s", c.made(), what, bad)
}

// killUp kills `dspool up` with SIGKILL and starts it again on the same
// data; one time in four it kills an agent while `dspool up` is away, and
// one in four the next `dspool up` too, at a random moment of its start.
// The run that comes up must have adopted every agent that ran on.
func (c *chaos) killUp() string {
	t := c.t
	before := map[string]int{}
	for _, s := range c.local {
		if pids := agentPIDs(s); len(pids) == 1 {
			before[s] = pids[0]
		}
	}
	c.forgetKilled(before)
	what := "kill -9 of dspool up"
	if err := c.up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.up.done
	c.done["up"]++
	if c.rng.IntN(4) == 0 && c.done["agent"] < c.plan["agent"] {
		// An agent dies while nobody watches it: the next run starts it
		// again.
		what += " (and " + strings.TrimPrefix(c.killAgent(), "kill -9 ") + " while it was away)"
		c.forgetKilled(before)
	}
	if c.rng.IntN(4) == 0 {
		early := launchUp(t, c.cfg)
		c.ups = append(c.ups, early)
		d := time.Duration(c.rng.IntN(1500)) * time.Millisecond
		time.Sleep(d)
		_ = early.cmd.Process.Kill()
		<-early.done
		what += fmt.Sprintf(" (and of the next dspool up %s into its start)", d.Round(time.Millisecond))
	}
	c.up = startUp(t, c.cfg)
	c.ups = append(c.ups, c.up)
	for s, pid := range before {
		if after := agentPIDs(s); !slices.Equal(after, []int{pid}) {
			c.fault(what, fmt.Sprintf("agents %v of %s after the restart, want the one that ran on, %d", after, filepath.Base(s), pid))
		}
	}
	if c.tmux != nil {
		if bad := c.tmux.relogin(t); bad != "" {
			c.fault(what, bad)
		}
	}
	return what
}

// forgetKilled removes from agents those killed since the pool was last
// whole: dying or started again, they are not for the next run to adopt.
func (c *chaos) forgetKilled(agents map[string]int) {
	for s := range agents {
		if _, ok := c.reconnect[s+".log"]; ok {
			delete(agents, s)
		}
	}
}

// killAgent kills the agent of a batch or ext node with SIGKILL: `dspool
// up` starts a local one again, the test the ext one.
func (c *chaos) killAgent() string {
	t := c.t
	// The batch nodes' agents, but one killed since the pool was last
	// whole (`dspool up` starts it again), and the ext node's.
	targets := []int{len(c.local)}
	for i := 1; i < len(c.local); i++ {
		if _, ok := c.reconnect[c.local[i]+".log"]; !ok {
			targets = append(targets, i)
		}
	}
	i := targets[c.rng.IntN(len(targets))]
	c.done["agent"]++
	if i == len(c.local) {
		c.hit("chaos-ext")
		_ = c.ext.agent.cmd.Process.Kill()
		<-c.ext.agent.done
		delete(c.reconnect, c.ext.agent.stderr)                        // if it was new, it never will
		time.Sleep(time.Duration(c.rng.IntN(2000)) * time.Millisecond) // away for a while
		c.ext.start(t)
		c.reconnect[c.ext.agent.stderr] = 0
		return "kill -9 of the ext node's agent"
	}
	pid := agentPID(t, c.local[i])
	log := c.local[i] + ".log"
	if _, ok := c.reconnect[log]; !ok {
		c.reconnect[log] = connects(log)
	}
	c.hit(filepath.Base(c.local[i]))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return "kill -9 of the agent of " + filepath.Base(c.local[i])
}

// hit notes that a disruption of node (a kill of its agent, a cut of its
// link) begins now: its attempts may be lost from now on.
func (c *chaos) hit(node string) {
	c.hits[node] = append(c.hits[node], time.Now())
}

// connects counts the connections to the control plane an agent's log
// tells of.
func connects(log string) int {
	b, _ := os.ReadFile(log)
	return strings.Count(string(b), `msg="connected to server"`)
}

// cutLink cuts the ext node's link, within its grace or past it (and the
// kill grace and margin after which the server retries its attempts), and
// has it heal by itself. A cut still under way heals first.
func (c *chaos) cutLink(long bool) string {
	d := time.Duration(500+c.rng.IntN(int(chaosGrace/2/time.Millisecond))) * time.Millisecond
	if long {
		d = chaosGrace + 2*time.Second + time.Duration(500+c.rng.IntN(3000))*time.Millisecond
	}
	reset := c.rng.IntN(2) == 0
	mode := "partitioned"
	if reset {
		mode = "reset"
	}
	c.ext.proxy.waitHealed()
	c.hit("chaos-ext")
	c.ext.proxy.cutLink(reset)
	c.done["cut"]++
	time.AfterFunc(d, c.ext.proxy.healLink)
	return fmt.Sprintf("ext's link %s for %s", mode, d.Round(time.Millisecond))
}

// logs are the files every control plane and agent logged to.
func (c *chaos) logs() []string {
	var files []string
	for _, u := range c.ups {
		files = append(files, u.stdout, u.stderr)
	}
	agents, _ := filepath.Glob(filepath.Join(c.up.Data, "agents", "*.log"))
	return append(append(files, agents...), c.ext.logs...)
}

// panics returns the lines of the logs that tell of a panic.
func (c *chaos) panics() []string {
	var out []string
	for _, f := range c.logs() {
		b, err := os.ReadFile(f)
		if err != nil {
			c.t.Errorf("log %s: %v", f, err)
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "panic") {
				out = append(out, f+": "+line)
			}
		}
	}
	return out
}
