package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/agentsim"
	"github.com/dspool/dspool/bench/internal/host"
)

// binWidth is the step of the connection attempts' timeline.
const binWidth = 100 * time.Millisecond

// Reconnect is what one kill -9 and start of the second part's control
// plane measured, in seconds from the exec of the new process.
type Reconnect struct {
	Agents int `json:"agents"`
	// ReadyzS: GET /readyz answered 200 (from another address).
	ReadyzS float64 `json:"readyz_s"`
	// AllS: the server counted every agent connected again
	// (dspool_agents_connected, asked every 200 ms).
	AllS float64 `json:"all_connected_s"`
	// The cpu time the server and the fleet's process spent from the exec
	// to AllS.
	ServerCPUS float64 `json:"server_cpu_s"`
	FleetCPUS  float64 `json:"fleet_cpu_s"`
	// The cpus the server and the fleet's process kept busy at rest,
	// before the kill (1 is one cpu).
	RestServerCPU float64 `json:"rest_server_cpus"`
	RestFleetCPU  float64 `json:"rest_fleet_cpus"`
	// Each agent's own connect (its log): percentiles and the last.
	P50S  float64 `json:"agent_p50_s"`
	P90S  float64 `json:"agent_p90_s"`
	LastS float64 `json:"agent_last_s"`
	// Attempts to connect from the kill on, by how they ended.
	Attempts  int `json:"attempts"`
	Connected int `json:"connected"`
	Busy      int `json:"busy"` // 503 Retry-After at the address's limit: told to come back
	BusyNodes int `json:"busy_agents"`
	Refused   int `json:"refused"` // nothing listened yet
	Dropped   int `json:"dropped"` // closed without an answer
	Errors    int `json:"errors"`
	// ErrorKinds are the distinct Errors (up to 5), each with its count.
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	// PeakPerS: attempts in the busiest second (windows of 10 steps);
	// PeakAtS: where that second began.
	PeakPerS float64 `json:"peak_attempts_per_s"`
	PeakAtS  float64 `json:"peak_at_s"`
	// MaxTries: the most attempts one agent made; the backoffs the agents
	// chose before their attempts (p50, max).
	MaxTries  int     `json:"max_attempts_one_agent"`
	WaitP50S  float64 `json:"backoff_p50_s"`
	WaitMaxS  float64 `json:"backoff_max_s"`
	Stopped   int     `json:"agents_stopped"`
	Timeline  []Bin   `json:"timeline"`
	StepS     float64 `json:"timeline_step_s"`
	KillExecS float64 `json:"kill_to_exec_s"` // the kill -> the exec (this program waits for the old process to go)
	// When the agents noticed their connection had broken, from the
	// kill: p50 and the last.
	LostP50S  float64 `json:"lost_p50_s"`
	LostLastS float64 `json:"lost_last_s"`
}

// Bin is one step of the timeline: the attempts that ended in it.
type Bin struct {
	AtS       float64 `json:"at_s"` // its start, from the exec
	Connected int     `json:"connected"`
	Busy      int     `json:"busy"`
	Refused   int     `json:"refused"`
	Dropped   int     `json:"dropped"`
	Errors    int     `json:"errors"`
}

func (b Bin) attempts() int { return b.Connected + b.Busy + b.Refused + b.Dropped + b.Errors }

// events collects a fleet's events.
type events struct {
	mu  sync.Mutex
	all []agentsim.Event
}

func (e *events) add(ev agentsim.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) since(t time.Time) []agentsim.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []agentsim.Event
	for _, ev := range e.all {
		if !ev.At.Before(t) {
			out = append(out, ev)
		}
	}
	return out
}

// reconnects starts the second part's control plane and fleet, and kills
// and starts the control plane n.AgentRestarts times.
func reconnects(ctx context.Context, bin, dir string, n Sizes) ([]Reconnect, error) {
	p, err := startPlane(ctx, bin, filepath.Join(dir, "agents"), false, host.FreeUIDRange(64000, 10))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if _, err := p.admin.ApplyPools(ctx, []*dspool.Pool{{Name: "sim", Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Count: n.Agents, Work: []dspool.Work{dspool.WorkBatch}}}); err != nil {
		return nil, fmt.Errorf("apply the pool: %w", err)
	}
	tok, err := p.admin.JoinToken(ctx, "sim")
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	as, err := agentsim.Unprivileged()
	if err != nil {
		return nil, err
	}
	fleetDir := filepath.Join(p.dir, "fleet")
	standIn, err := agentsim.StandInShare(fleetDir, p.share)
	if err != nil {
		return nil, err
	}
	ev := &events{}
	t0 := time.Now()
	fleet, err := agentsim.Spawn(agentsim.Options{Nodes: n.Agents, Server: p.url(), JoinToken: tok.Token, Pool: "sim",
		Dir: fleetDir, Share: standIn, Joining: 32}, as, ev.add)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := fleet.Stop(time.Minute); err != nil {
			host.Logf("%v", err)
		}
	}()
	if _, err := waitConnected(ctx, p, fleet, n.Agents, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("%d simulated agents joining: %w", n.Agents, err)
	}
	if err := waitNodes(ctx, p.admin, n.Agents); err != nil {
		return nil, err
	}
	host.Logf("%d simulated agents joined and connected in %.1f s", n.Agents, time.Since(t0).Seconds())
	var out []Reconnect
	ready := time.Now()
	for i := range n.AgentRestarts {
		// The fleet at rest, each agent's backoff to start afresh.
		rest, serverCPU, fleetCPU := time.Now(), cpuSeconds(p.cmd.Process.Pid), cpuSeconds(fleet.Pid())
		if err := sleep(ctx, time.Until(ready.Add(settle))); err != nil {
			return out, err
		}
		d := time.Since(rest).Seconds()
		restServer, restFleet := (cpuSeconds(p.cmd.Process.Pid)-serverCPU)/d, (cpuSeconds(fleet.Pid())-fleetCPU)/d
		r, err := reconnect(ctx, p, fleet, ev, n.Agents)
		if err != nil {
			return out, fmt.Errorf("restart %d: %w", i+1, err)
		}
		r.RestServerCPU, r.RestFleetCPU = restServer, restFleet
		host.Logf("kill -9 and start: %d agents connected again after %.2f s (server's count), %d attempts, %d told to come back later",
			n.Agents, r.AllS, r.Attempts, r.Busy)
		out = append(out, r)
		ready = time.Now()
	}
	return out, nil
}

// reconnect kills the control plane, starts it again and measures how its
// agents come back.
func reconnect(ctx context.Context, p *plane, fleet *agentsim.Process, ev *events, agents int) (Reconnect, error) {
	r := Reconnect{Agents: agents}
	killed := time.Now()
	p.kill()
	t0, err := p.exec()
	if err != nil {
		return r, err
	}
	r.KillExecS = t0.Sub(killed).Seconds()
	serverCPU, fleetCPU := cpuSeconds(p.cmd.Process.Pid), cpuSeconds(fleet.Pid())
	ready := make(chan float64, 1)
	go func() {
		cl := p.client(p.admin.Token)
		for ctx.Err() == nil && time.Since(t0) < time.Minute {
			if get(ctx, cl, "/readyz") == nil {
				ready <- time.Since(t0).Seconds()
				return
			}
			time.Sleep(pollEvery)
		}
		ready <- -1
	}()
	all, err := waitConnected(ctx, p, fleet, agents, time.Minute)
	if err != nil {
		return r, err
	}
	r.AllS = all.Sub(t0).Seconds()
	r.ServerCPUS, r.FleetCPUS = cpuSeconds(p.cmd.Process.Pid)-serverCPU, cpuSeconds(fleet.Pid())-fleetCPU
	if r.ReadyzS = <-ready; r.ReadyzS < 0 {
		return r, fmt.Errorf("GET /readyz: no 200 within a minute of the exec (the server's log: %s)", p.log)
	}
	// Every agent's own account of its return.
	err = host.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		back := map[int]bool{}
		for _, e := range ev.since(killed) {
			if e.Kind == agentsim.Connected {
				back[e.Node] = true
			}
		}
		return len(back) == agents, nil
	})
	if err != nil {
		return r, fmt.Errorf("the agents' own connects: %w", err)
	}
	if err := waitNodes(ctx, p.admin, agents); err != nil {
		return r, err
	}
	r.tally(ev.since(killed), t0)
	var lost []float64
	for _, e := range ev.since(killed) {
		if e.Kind == agentsim.Lost {
			lost = append(lost, e.At.Sub(killed).Seconds())
		}
	}
	r.LostP50S, _, r.LostLastS = pcts(lost)
	return r, nil
}

// cpuSeconds is the cpu time (user and system) process pid has used.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's cpu times.
const clockTicks = 100

// waitConnected waits until the server counts want agents connected, and
// returns when it first did.
func waitConnected(ctx context.Context, p *plane, fleet *agentsim.Process, want int, timeout time.Duration) (time.Time, error) {
	cl := p.client(p.admin.Token)
	var at time.Time
	var n float64
	// Each look reads every node from the store: not too often, the
	// server has work to do.
	err := host.Poll(ctx, timeout, 200*time.Millisecond, func() (bool, error) {
		select {
		case <-fleet.Done():
			return false, fleet.Err()
		default:
		}
		var err error
		if n, err = gauge(ctx, cl, "dspool_agents_connected"); err == nil && int(n) >= want {
			at = time.Now()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return at, fmt.Errorf("%d of %d agents connected as the server counts them: %w (the server's log: %s)", int(n), want, err, p.log)
	}
	return at, nil
}

// peak is the most attempts that ended within one second (windows of
// whole steps), and where that second began.
func peak(bins []Bin) (perS, atS float64) {
	for i := range bins {
		sum := 0
		for _, b := range bins[i:min(i+int(time.Second/binWidth), len(bins))] {
			sum += b.attempts()
		}
		if float64(sum) > perS {
			perS, atS = float64(sum), bins[i].AtS
		}
	}
	return perS, atS
}

// pcts sorts s and returns its p50, p90 and largest (zeros when empty).
func pcts(s []float64) (p50, p90, last float64) {
	if len(s) == 0 {
		return 0, 0, 0
	}
	slices.Sort(s)
	return host.Pct(s, 50), host.Pct(s, 90), s[len(s)-1]
}

// addrs are the addresses in errors, which make each one distinct.
var addrs = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)

// tally sorts the events since the kill into r, with times from t0.
func (r *Reconnect) tally(evs []agentsim.Event, t0 time.Time) {
	first := map[int]time.Time{}
	tries := map[int]int{}
	busy := map[int]bool{}
	var waits []float64
	var last time.Time
	for _, e := range evs {
		if e.At.After(last) {
			last = e.At
		}
	}
	r.StepS = binWidth.Seconds()
	bins := make([]Bin, int(last.Sub(t0)/binWidth)+1)
	for i := range bins {
		bins[i].AtS = float64(i) * r.StepS
	}
	for _, e := range evs {
		if e.Wait > 0 {
			waits = append(waits, e.Wait.Seconds())
		}
		if e.Kind == agentsim.Stopped {
			r.Stopped++
		}
		if e.Kind != agentsim.Connected && e.Kind != agentsim.Failed {
			continue
		}
		if e.Kind == agentsim.Connected && first[e.Node].IsZero() {
			first[e.Node] = e.At
		}
		if !first[e.Node].IsZero() && e.At.After(first[e.Node]) {
			continue // it came back; what follows is another story
		}
		r.Attempts++
		tries[e.Node]++
		b := &bins[max(0, int(e.At.Sub(t0)/binWidth))]
		switch {
		case e.Kind == agentsim.Connected:
			r.Connected++
			b.Connected++
		case e.Class == agentsim.Busy:
			r.Busy++
			b.Busy++
			busy[e.Node] = true
		case e.Class == agentsim.Refused:
			r.Refused++
			b.Refused++
		case e.Class == agentsim.Dropped:
			r.Dropped++
			b.Dropped++
		default:
			r.Errors++
			b.Errors++
			k := addrs.ReplaceAllString(e.Err, "ADDR")
			if r.ErrorKinds == nil {
				r.ErrorKinds = map[string]int{}
			}
			if _, ok := r.ErrorKinds[k]; ok || len(r.ErrorKinds) < 5 {
				r.ErrorKinds[k]++
			}
		}
	}
	r.BusyNodes = len(busy)
	for _, n := range tries {
		r.MaxTries = max(r.MaxTries, n)
	}
	var back []float64
	for _, at := range first {
		back = append(back, at.Sub(t0).Seconds())
	}
	r.P50S, r.P90S, r.LastS = pcts(back)
	r.WaitP50S, _, r.WaitMaxS = pcts(waits)
	r.PeakPerS, r.PeakAtS = peak(bins)
	// The timeline ends with the last agent's return.
	end := int(max(0, r.LastS/r.StepS)) + 1
	r.Timeline = bins[:min(end, len(bins))]
}
