package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/backoff"
	"github.com/hashicorp/yamux"
)

// Heartbeats: what the agent tells the server of its node and attempts, on
// a stream of its own connection, and what it does with the answer.

func (ag *Agent) changed() {
	select {
	case ag.dirty <- struct{}{}:
	default:
	}
}

func (ag *Agent) heartbeatLoop(ctx context.Context, sess *yamux.Session, hc *http.Client, l *link) error {
	interval := 2 * time.Second
	// A heartbeat the server answers with an error (its store failed) is
	// sent again on the same connection, sooner than the interval: the
	// connection works, and dropping it would end every session it carries.
	var retry backoff.Backoff
	var lastErr string
	var lastLogged time.Time
	for {
		wait := interval
		reply, err := ag.heartbeat(ctx, hc)
		var refused *refusedHeartbeat
		switch {
		case errors.As(err, &refused):
			retry.Max = interval
			wait = retry.Next()
			if msg := refused.Error(); msg != lastErr || time.Since(lastLogged) > 30*time.Second {
				ag.log.Warn("the server could not take a heartbeat; sending it again on the same connection", "err", refused, "in", wait)
				lastErr, lastLogged = msg, time.Now()
			}
		case err != nil:
			return err
		default:
			if lastErr != "" {
				ag.log.Info("the server takes heartbeats again")
				lastErr = ""
			}
			retry.Reset()
			if reply.Interval > 0 {
				interval = time.Duration(reply.Interval)
				wait = interval
			}
			ag.apply(ctx, reply)
			// After the reply's starts are known: pushes begun before
			// it are ignored from here (serveStart).
			l.applied.Store(max(l.applied.Load(), reply.Seq))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-sess.CloseChan():
			t.Stop()
			return errors.New("connection closed")
		case <-ag.dirty:
		case <-t.C:
		}
		t.Stop()
	}
}

// refusedHeartbeat is a heartbeat the server answered with an error.
type refusedHeartbeat struct {
	status string
	body   string
	heard  bool // the heartbeat handler answered (api.HeardHeader)
}

func (e *refusedHeartbeat) Error() string {
	return fmt.Sprintf("heartbeat refused: %s: %s", e.status, e.body)
}

func (ag *Agent) snapshot() *api.Heartbeat {
	shareUse, trouble := ag.share.state(time.Second)
	shareUse.GPUsBusy = ag.busyGPUs()
	ag.mu.Lock()
	defer ag.mu.Unlock()
	hb := &api.Heartbeat{Boot: ag.boot, State: ag.state, Message: ag.message, Inventory: ag.inv, Usage: usage(shareUse), Version: ag.cfg.Version,
		Attempts: []api.AttemptStatus{}}
	if hb.State == dspool.NodeReady && trouble != "" {
		hb.State, hb.Message = dspool.NodeFailed, trouble
	}
	for _, a := range ag.attempts {
		hb.Attempts = append(hb.Attempts, a.status())
		if a.status().Running {
			hb.Usage.Attempts++
		}
	}
	sort.Slice(hb.Attempts, func(i, j int) bool { return hb.Attempts[i].Job < hb.Attempts[j].Job })
	return hb
}

func (ag *Agent) heartbeat(ctx context.Context, hc *http.Client) (*api.HeartbeatReply, error) {
	hb := ag.snapshot()
	hb.Sessions = ag.hostedSessions() // outside ag.mu
	var stamp string
	hb.Accounts, stamp = ag.reporter.report()
	sent := bootNow()
	reply, err := ag.send(ctx, hc, hb)
	var refused *refusedHeartbeat
	if err == nil || errors.As(err, &refused) && refused.heard {
		// The server recorded the contact before it answered, whatever
		// it answered.
		ag.heard(sent)
	}
	if err == nil && hb.Accounts != nil {
		ag.reporter.delivered(hb.Accounts, stamp)
	}
	return reply, err
}

func (ag *Agent) send(ctx context.Context, hc *http.Client, hb *api.Heartbeat) (*api.HeartbeatReply, error) {
	b, _ := json.Marshal(hb)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://server/heartbeat", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &refusedHeartbeat{status: resp.Status, body: string(bytes.TrimSpace(body)), heard: resp.Header.Get(api.HeardHeader) != ""}
	}
	var reply api.HeartbeatReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&reply); err != nil {
		return nil, fmt.Errorf("heartbeat reply: %w", err)
	}
	return &reply, nil
}

func (ag *Agent) apply(ctx context.Context, r *api.HeartbeatReply) {
	for _, ref := range r.Ack {
		ag.mu.Lock()
		if a := ag.attempts[ref]; a != nil && !a.status().Running {
			delete(ag.attempts, ref)
			ag.forgetStarted(ref)
		}
		ag.mu.Unlock()
	}
	for _, ref := range r.Kill {
		ag.mu.Lock()
		a := ag.attempts[ref]
		ag.mu.Unlock()
		if a != nil {
			ag.log.Warn("killing a stale attempt", "job", ref.Job, "attempt", ref.Attempt)
			ag.kill(a, "")
		}
	}
	for _, spec := range r.Start {
		ag.accept(spec)
	}
	for _, id := range r.EndSessions {
		ag.log.Info("the server no longer knows this session: ending it", "session", id)
		ag.endSession(id)
	}
	if r.Accounts != nil && ag.reporter.ask(*r.Accounts) {
		ag.changed() // report them now, not at the next interval
	}
	if r.Pool != nil {
		ag.mu.Lock()
		first := !ag.setupRan
		ag.setupRan = true
		ag.mu.Unlock()
		if first {
			go ag.setup(ctx, r.Pool)
		}
	}
}

// link is what the agent knows of one connection.
type link struct {
	// applied is the number of the last heartbeat reply applied.
	applied atomic.Uint64
}

func (ag *Agent) serveStart(l *link, w http.ResponseWriter, r *http.Request) {
	var spec api.AttemptSpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
		http.Error(w, "bad attempt: "+err.Error(), http.StatusBadRequest)
		return
	}
	defer w.WriteHeader(http.StatusAccepted)
	if l.applied.Load() > spec.After {
		// A reply begun after the server placed the attempt came first:
		// it carried this start if it is still wanted, and this push may
		// come after the attempt ran and was acknowledged. A heartbeat now
		// brings the start if it is wanted and was missed.
		wipeSecrets(spec.Secrets)
		ag.log.Debug("ignored a late push of a start", "job", spec.Job, "attempt", spec.Attempt, "after", spec.After, "applied", l.applied.Load())
		ag.changed()
		return
	}
	ag.accept(spec)
}
