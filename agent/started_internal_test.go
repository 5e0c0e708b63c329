package agent

import (
	"context"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestStartedAttemptsOutliveTheAgent: an attempt an agent started stays
// noted in its state directory until the server acknowledges its end; the
// next agent on the directory reports it ended with its node lost, and does
// not start it when the server sends it again.
func TestStartedAttemptsOutliveTheAgent(t *testing.T) {
	cfg := Config{Server: "http://127.0.0.1:1", StateDir: t.TempDir(), Share: t.TempDir(), CPUs: 1000, Memory: 1 << 30}
	agentOn := func() *Agent {
		t.Helper()
		ag, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return ag
	}
	ref := api.AttemptRef{Job: 7, Attempt: 1}
	first := agentOn()
	first.noteStarted(ref)
	first.lock.Close() // it dies, and its attempt with it

	next := agentOn()
	hb := next.snapshot()
	if len(hb.Attempts) != 1 || hb.Attempts[0].AttemptRef != ref || hb.Attempts[0].Running ||
		hb.Attempts[0].Result == nil || hb.Attempts[0].Result.Reason != dspool.ReasonNodeLost || hb.Attempts[0].StartedAt == nil {
		t.Fatalf("the next agent reports %+v; want attempt %+v ended node_lost, with when it started", hb.Attempts, ref)
	}
	// Sent again by a server that had not heard of its start: not run.
	next.accept(api.AttemptSpec{AttemptRef: ref, Command: []string{"false"}})
	if st := next.snapshot().Attempts; len(st) != 1 || st[0].Running || st[0].Result.Reason != dspool.ReasonNodeLost {
		t.Fatalf("after the server sent it again: %+v; want it still ended node_lost, not started", st)
	}
	next.apply(context.Background(), &api.HeartbeatReply{Ack: []api.AttemptRef{ref}})
	next.lock.Close()

	if st := agentOn().snapshot().Attempts; len(st) != 0 {
		t.Errorf("after the server acknowledged its end, the agent after reports %+v; want nothing", st)
	}
}
