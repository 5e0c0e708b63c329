package agent

// Self-fencing: an agent cut off from the control plane for longer than the
// node grace stops its attempts itself, so that the retries the server
// starts elsewhere (only later: docs/decisions/0014) never run beside them.
// Its watchdog (watchdog.go) does the same with SIGKILL if the agent
// itself cannot (stopped, hung).

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
)

// bootNow reads CLOCK_BOOTTIME, which the agent and its watchdog share and
// which keeps counting while the machine is suspended (as the server's
// clock does; Go's monotonic clock stops).
func bootNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// fence is what the agent knows of its last contact with the control plane.
type fence struct {
	mu sync.Mutex
	// grace is the server's node grace (0: not told, no fencing).
	grace time.Duration
	// contact is when (bootNow) the last heartbeat the server answered, in
	// any way, was sent: the server heard of the node after that.
	contact time.Duration
	// killGrace is the longest kill grace of the attempts started here.
	killGrace time.Duration
	// fenced: the attempts were stopped since the last contact.
	fenced bool
}

// fenceTick is how often the agent checks its last contact.
const fenceTick = 100 * time.Millisecond

// connected records the node grace the server gave a new connection.
func (ag *Agent) connected(grace time.Duration) {
	ag.fence.mu.Lock()
	ag.fence.grace = grace
	ag.fence.mu.Unlock()
	if grace <= 0 {
		ag.log.Warn("the server gave no node grace: this agent cannot stop its attempts itself when cut off, and their retries may run beside them")
	}
}

// heard records that the server answered a heartbeat sent at sent.
func (ag *Agent) heard(sent time.Duration) {
	ag.fence.mu.Lock()
	if sent > ag.fence.contact {
		ag.fence.contact = sent
		ag.fence.fenced = false
	}
	ag.fence.mu.Unlock()
	ag.armWatchdog()
}

// startsAttempt notes the kill grace of an attempt about to start: the
// watchdog's deadline leaves the agent that long to stop it gently.
func (ag *Agent) startsAttempt(killGrace time.Duration) {
	ag.fence.mu.Lock()
	more := killGrace > ag.fence.killGrace
	if more {
		ag.fence.killGrace = killGrace
	}
	ag.fence.mu.Unlock()
	if more {
		ag.armWatchdog()
	}
}

// armWatchdog tells the watchdog when to kill the attempts if no contact
// comes first: at the fence, plus the kill grace the agent has to stop
// them gently itself.
func (ag *Agent) armWatchdog() {
	ag.fence.mu.Lock()
	deadline := time.Duration(0)
	if ag.fence.grace > 0 && ag.fence.contact > 0 {
		deadline = ag.fence.contact + ag.fence.grace + ag.fence.killGrace
	}
	ag.fence.mu.Unlock()
	ag.wd.setDeadline(deadline)
}

// fenceLoop stops the attempts once the last contact is older than the
// node grace, until ctx ends.
func (ag *Agent) fenceLoop(ctx context.Context) {
	t := time.NewTicker(fenceTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ag.fence.mu.Lock()
		grace, contact := ag.fence.grace, ag.fence.contact
		cut := grace > 0 && contact > 0 && !ag.fence.fenced && bootNow()-contact >= grace
		if cut {
			ag.fence.fenced = true
		}
		ag.fence.mu.Unlock()
		if cut {
			ag.fenceAttempts(grace)
			// The server ends this node's sessions once it is lost:
			// none may keep running unseen (and holding its
			// reservation) on a node that may never come back.
			if n := ag.endAllSessions(); n > 0 {
				ag.log.Error("no contact with the control plane for the node grace: ended this node's sessions", "grace", grace, "sessions", n)
			}
		}
	}
}

// fenceAttempts stops every running attempt (SIGTERM, SIGKILL after its
// kill grace) with reason node_lost.
func (ag *Agent) fenceAttempts(grace time.Duration) {
	ag.mu.Lock()
	var running []*attempt
	for _, a := range ag.attempts {
		if a.status().Running {
			running = append(running, a)
		}
	}
	ag.mu.Unlock()
	if len(running) == 0 {
		return
	}
	ag.log.Error("no contact with the control plane for the node grace: stopping this node's attempts, which the server retries elsewhere after the grace",
		"grace", grace, "attempts", len(running))
	msg := fmt.Sprintf("stopped by its node, cut off from the control plane for longer than the node grace (%s), so that its retry never runs beside it; retried if the job has retries left", grace)
	for _, a := range running {
		a.mu.Lock()
		if a.killMessage == "" {
			a.killMessage = msg
		}
		a.mu.Unlock()
		ag.kill(a, dspool.ReasonNodeLost)
	}
}
