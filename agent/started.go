package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// The attempts an agent starts are noted in its state directory until the
// server acknowledges how they ended. An agent that dies (kill -9) takes
// its attempts with it (its watchdog kills them); the next agent on the
// node finds the notes and reports those attempts lost. Without them, an
// attempt whose start the server had not heard of when the agent died
// would be started again under the same number (the server sends a node
// the attempts placed on it that it does not report), running the job a
// second time, with no retry counted and whatever its retries.

// lostMessage says why an attempt a dead agent had started ended.
const lostMessage = "the node's agent died while it ran: it ended with the agent"

func (ag *Agent) startedDir() string { return filepath.Join(ag.cfg.StateDir, "started") }

func startedName(ref api.AttemptRef) string { return fmt.Sprintf("j%d-a%d", ref.Job, ref.Attempt) }

// noteStarted notes that this agent starts the attempt. Without the note
// the attempt still runs: only an agent's death then loses it.
func (ag *Agent) noteStarted(ref api.AttemptRef) {
	err := os.MkdirAll(ag.startedDir(), 0o700)
	if err == nil {
		err = os.WriteFile(filepath.Join(ag.startedDir(), startedName(ref)), nil, 0o600)
	}
	if err != nil {
		ag.log.Warn("no note of a started attempt: should this agent die, the next could start it again", "job", ref.Job, "attempt", ref.Attempt, "err", err)
	}
}

// forgetStarted removes the note once the server has the attempt's end.
func (ag *Agent) forgetStarted(ref api.AttemptRef) {
	_ = os.Remove(filepath.Join(ag.startedDir(), startedName(ref)))
}

// startedBefore returns the attempts an earlier agent on this state
// directory started and the server has not acknowledged as ended, as ended
// with their node lost: that agent is gone (we hold the directory's lock),
// and they went with it.
func (ag *Agent) startedBefore() []*attempt {
	entries, err := os.ReadDir(ag.startedDir())
	if err != nil {
		return nil
	}
	var out []*attempt
	now := time.Now().UTC()
	for _, e := range entries {
		var ref api.AttemptRef
		if _, err := fmt.Sscanf(e.Name(), "j%d-a%d", &ref.Job, &ref.Attempt); err != nil || startedName(ref) != e.Name() {
			continue
		}
		a := &attempt{spec: api.AttemptSpec{AttemptRef: ref}, finishedAt: &now, done: make(chan struct{}),
			result: &dspool.AttemptResult{Reason: dspool.ReasonNodeLost, Message: lostMessage}}
		if info, err := e.Info(); err == nil {
			started := info.ModTime().UTC()
			a.startedAt = &started
		}
		close(a.done)
		out = append(out, a)
	}
	return out
}
