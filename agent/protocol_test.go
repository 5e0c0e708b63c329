package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/hashicorp/yamux"
)

// scriptedPlane is a control plane that a test drives message by message
// over the real agent protocol, to put the agent's messages in an order a
// real server produces only by chance.
type scriptedPlane struct {
	t       *testing.T
	URL     string
	beats   chan *api.Heartbeat
	replies chan *api.HeartbeatReply
	sess    chan *yamux.Session
	// terms, when set, are the leader's terms the n-th connection is
	// answered with (api.LeaderTermHeader), one per connection.
	terms chan string
}

func newScriptedPlane(t *testing.T) *scriptedPlane {
	p := &scriptedPlane{t: t, beats: make(chan *api.Heartbeat), replies: make(chan *api.HeartbeatReply), sess: make(chan *yamux.Session, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/agents/connect", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		term := ""
		if p.terms != nil {
			term = fmt.Sprintf("%s: %s\r\n", api.LeaderTermHeader, <-p.terms)
		}
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n%s: 1h\r\n%s\r\n", api.AgentUpgrade, api.NodeGraceHeader, term)
		_ = brw.Flush()
		sess, err := yamux.Server(&bufConn{Conn: conn, r: brw.Reader}, api.MuxConfig())
		if err != nil {
			return
		}
		p.sess <- sess
		hb := http.NewServeMux()
		hb.HandleFunc("POST /heartbeat", func(w http.ResponseWriter, r *http.Request) {
			var b api.Heartbeat
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			select {
			case p.beats <- &b:
			case <-r.Context().Done():
				return
			}
			select {
			case reply := <-p.replies:
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(reply)
			case <-r.Context().Done():
			}
		})
		_ = (&http.Server{Handler: hb}).Serve(sess)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not here", http.StatusNotFound) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// beat waits for the agent's next heartbeat.
func (p *scriptedPlane) beat() *api.Heartbeat {
	p.t.Helper()
	select {
	case hb := <-p.beats:
		return hb
	case <-time.After(10 * time.Second):
		p.t.Fatal("no heartbeat from the agent within 10s")
		return nil
	}
}

// reply answers the heartbeat the agent is waiting on.
func (p *scriptedPlane) reply(r *api.HeartbeatReply) {
	p.t.Helper()
	select {
	case p.replies <- r:
	case <-time.After(10 * time.Second):
		p.t.Fatal("the agent was not waiting for a heartbeat reply")
	}
}

// push sends a start the way the server pushes one, outside the heartbeats.
func (p *scriptedPlane) push(sess *yamux.Session, spec []byte) {
	p.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return sess.Open() }}}
	resp, err := hc.Post("http://agent/attempts", "application/json", bytes.NewReader(spec))
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		p.t.Fatalf("push: %s", resp.Status)
	}
}

// scriptedAgent runs a real agent with an identity already made, against
// the scripted plane.
func scriptedAgent(t *testing.T, p *scriptedPlane) string {
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	state, share := filepath.Join(dir, "state"), filepath.Join(dir, "share")
	for _, d := range []string{state, share} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id := `{"node":"n-scripted","name":"scripted","pool":"default","server":"` + p.URL + `","credential":"dspn_scripted"}`
	if err := os.WriteFile(filepath.Join(state, "node.json"), []byte(id), 0o600); err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(context.Background(), agent.Config{Server: p.URL, StateDir: state, Share: share, CPUs: 1000, Memory: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		// Its last report, if it makes one, gets no answer.
		go func() {
			for range p.beats {
			}
		}()
		<-done
	})
	return share
}

// TestStalePushDoesNotStartAgain: a start the server pushed, arriving after
// the agent has already run that attempt (started from a heartbeat reply)
// and had it acknowledged, does not start it a second time.
func TestStalePushDoesNotStartAgain(t *testing.T) {
	p := newScriptedPlane(t)
	share := scriptedAgent(t, p)
	sess := <-p.sess
	ran := filepath.Join(share, "ran")
	spec := api.AttemptSpec{AttemptRef: api.AttemptRef{Job: 7, Attempt: 1}, Name: "once", Pool: "default",
		User: api.RunAs{Name: "root", UID: 0, GID: 0}, Command: []string{"sh", "-c", "echo ran >> " + ran},
		Workdir: "jobs/7", Home: "home/root", JobDir: "jobs/7", Log: "jobs/7/attempt-1.log",
		CPUs: 1000, Memory: 1 << 30, KillGrace: dspool.Duration(time.Second), OutputLimit: 1 << 20}
	if os.Geteuid() != 0 {
		spec.User = api.RunAs{Name: "self", UID: os.Getuid(), GID: os.Getgid()}
	}
	// The server placed the attempt and pushed it; the push is slow, and
	// the next heartbeat's reply starts it first.
	pushed, err := json.Marshal(struct {
		api.AttemptSpec
		After uint64 `json:"after"`
	}{spec, 0})
	if err != nil {
		t.Fatal(err)
	}
	interval := dspool.Duration(50 * time.Millisecond)
	p.beat()
	p.reply(&api.HeartbeatReply{Interval: interval, Seq: 1, Start: []api.AttemptSpec{spec}})
	for seq := uint64(2); ; seq++ {
		hb := p.beat()
		if len(hb.Attempts) == 1 && hb.Attempts[0].Result != nil {
			p.reply(&api.HeartbeatReply{Interval: interval, Seq: seq, Ack: []api.AttemptRef{spec.AttemptRef}})
			break
		}
		p.reply(&api.HeartbeatReply{Interval: interval, Seq: seq})
		if seq > 100 {
			t.Fatal("the attempt did not finish")
		}
	}
	// The agent has applied the acknowledgement once it sends again.
	p.beat()
	p.reply(&api.HeartbeatReply{Interval: interval, Seq: 1000})
	p.push(sess, pushed)
	for i := 0; i < 3; i++ {
		if hb := p.beat(); len(hb.Attempts) > 0 {
			t.Errorf("after the stale push the agent reports %+v, want nothing: it started the attempt again", hb.Attempts)
		}
		p.reply(&api.HeartbeatReply{Interval: interval, Seq: uint64(1001 + i)})
	}
	if b, _ := os.ReadFile(ran); strings.Count(string(b), "ran") != 1 {
		t.Errorf("the attempt ran %d times, want once", strings.Count(string(b), "ran"))
	}
}

// TestAgentRefusesAnOlderLeader: once answered by a control plane leading
// under a term, an agent refuses a connection answered under an older one
// (a control plane that lost the lead and does not know it yet) and
// connects again, to the newer.
func TestAgentRefusesAnOlderLeader(t *testing.T) {
	p := newScriptedPlane(t)
	p.terms = make(chan string, 3)
	for _, term := range []string{"5", "4", "6"} {
		p.terms <- term
	}
	scriptedAgent(t, p)
	first := <-p.sess
	p.beat()
	p.reply(&api.HeartbeatReply{Interval: dspool.Duration(time.Hour), Seq: 1})
	first.Close()

	older := <-p.sess
	select {
	case <-older.CloseChan():
	case hb := <-p.beats:
		t.Fatalf("the agent sent a heartbeat (%+v) on a connection of term 4 after one of term 5", hb)
	case <-time.After(20 * time.Second):
		t.Fatal("the agent kept a connection of term 4 after one of term 5")
	}

	newer := <-p.sess
	p.beat()
	p.reply(&api.HeartbeatReply{Interval: dspool.Duration(time.Hour), Seq: 2})
	newer.Close()
}
