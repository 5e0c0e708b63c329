// Package agentsim runs many simulated nodes in one process, for the
// benchmarks that need a large pool on one machine. Each node is a real
// agent (package agent, as `dspool agent` runs it) with a state directory
// of its own: it joins a real control plane with a join token, holds its
// connection, heartbeats and reconnects with its own backoff. The nodes
// take no work: nothing here starts a process for them, so a thousand fit
// on a laptop.
//
// An agent that runs as root makes cgroups, a tmpfs for secrets and
// accounts; a thousand of them in one process would leave a thousand
// cgroups on the machine for nothing. So a root process runs its fleet in
// a child process as an unprivileged user (Spawn), where each agent skips
// them, as it does on any node whose agent is not root; the link to the
// control plane (registration, TLS, the upgraded connection, heartbeats,
// backoff) is the same.
//
// What it reports it reads from each agent's log records (Config.Logger):
// it must never change how an agent behaves.
package agentsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/share"
)

// Options configures a fleet. Zero values mean the defaults.
type Options struct {
	// Nodes is how many agents run.
	Nodes int `json:"nodes"`
	// Server, JoinToken and Pool are each agent's --server, --join-token
	// and --pool.
	Server    string `json:"server"`
	JoinToken string `json:"join_token"`
	Pool      string `json:"pool"`
	// Dir holds the agents' state directories (Dir/nodes/NAME) and their
	// runtime directories (Dir/run).
	Dir string `json:"dir"`
	// Share is where the nodes find the pool's share: a directory they may
	// write, holding the share's marker (StandInShare(Dir, ...) makes one).
	Share string `json:"share"`
	// Prefix names the nodes PREFIX-0001, PREFIX-0002, ... (default sim).
	Prefix string `json:"prefix"`
	// CPUs and Memory are what each node declares (default 1 cpu, 1 GiB).
	CPUs   dspool.MilliCPU `json:"cpus"`
	Memory dspool.Bytes    `json:"memory"`
	// Joining bounds the agents started and not yet connected (default
	// 16): a new fleet joins in waves rather than all at once.
	Joining int `json:"joining"`
}

// Kind is what happened to an agent.
type Kind string

const (
	// Connected: the agent holds a connection to the control plane.
	Connected Kind = "connected"
	// Lost: its connection ended; it reconnects after Event.Wait.
	Lost Kind = "lost"
	// Failed: an attempt to connect (or, before it first connected, to
	// join) failed, as Event.Class says; it tries again after Event.Wait.
	Failed Kind = "failed"
	// Stopped: the agent ended (Event.Err says why when it failed).
	Stopped Kind = "stopped"
)

// Class sorts failed attempts.
type Class string

const (
	// Busy: the server answered 503 with Retry-After, its word that it
	// did nothing with the request (a connection past its address's
	// limit): come back later. Not an error.
	Busy Class = "busy"
	// Refused: nothing listened (the control plane was not up yet).
	Refused Class = "refused"
	// Dropped: the connection was closed or reset without an answer (a
	// server past the answers it gives refused connections at once).
	Dropped Class = "dropped"
	// Error: anything else.
	Error Class = "error"
)

// Event is one thing that happened to one agent.
type Event struct {
	Node  int           `json:"node"` // 0 .. Nodes-1
	At    time.Time     `json:"at"`
	Kind  Kind          `json:"kind"`
	Class Class         `json:"class,omitempty"`
	Wait  time.Duration `json:"wait,omitempty"` // before the next attempt
	Err   string        `json:"err,omitempty"`
}

// Name is the name of node i.
func (o Options) Name(i int) string {
	return fmt.Sprintf("%s-%04d", cmp.Or(o.Prefix, "sim"), i+1)
}

// Run runs the fleet until ctx ends and every agent has stopped, telling
// events (called from many goroutines at once) what happens to each.
func Run(ctx context.Context, o Options, events func(Event)) error {
	if o.Nodes <= 0 || o.Server == "" || o.Dir == "" || o.Share == "" {
		return fmt.Errorf("agentsim: give Nodes, Server, Dir and Share (got %d nodes, server %q, dir %q, share %q)", o.Nodes, o.Server, o.Dir, o.Share)
	}
	o.CPUs = cmp.Or(o.CPUs, 1000)
	o.Memory = cmp.Or(o.Memory, 1<<30)
	o.Joining = cmp.Or(o.Joining, 16)
	run := filepath.Join(o.Dir, "run")
	if err := os.MkdirAll(run, 0o711); err != nil {
		return fmt.Errorf("agentsim: %w", err)
	}
	joining := make(chan struct{}, o.Joining)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range o.Nodes {
		select {
		case joining <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		rec := &recorder{node: i, events: events, joined: func() { <-joining }}
		ag, err := agent.New(ctx, agent.Config{Server: o.Server, JoinToken: o.JoinToken, Pool: o.Pool, Name: o.Name(i),
			StateDir: filepath.Join(o.Dir, "nodes", o.Name(i)), Share: o.Share, RuntimeDir: run,
			CPUs: o.CPUs, Memory: o.Memory, GPUs: 0, Version: "agentsim", Logger: slog.New(rec),
			// Stopped, the nodes stay in the pool (lost after the grace),
			// as `dspool up`'s do: no final report from every agent.
			StayOnStop: true})
		if err != nil {
			rec.stopped(err)
			continue
		}
		wg.Go(func() { rec.stopped(ag.Run(ctx)) })
	}
	return nil
}

// The agent's log messages that mark its connection's life (agent.go).
const (
	msgConnected    = "connected to server"
	msgReconnecting = "connection to server lost; attempts keep running, reconnecting"
	msgRegister     = "register"
)

// recorder is one agent's slog.Handler: it turns the records that mark its
// connection's life into events, and drops the rest.
type recorder struct {
	node   int
	events func(Event)
	joined func() // called once, at the first connection or the end

	mu     sync.Mutex
	up     bool // connected now
	joinDo sync.Once
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *recorder) WithGroup(string) slog.Handler                { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	ev := Event{Node: r.node, At: rec.Time}
	var err error
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "err":
			err, _ = a.Value.Any().(error)
		case "in", "retry_in":
			ev.Wait, _ = a.Value.Any().(time.Duration)
		}
		return true
	})
	r.mu.Lock()
	switch rec.Message {
	case msgConnected:
		ev.Kind, r.up = Connected, true
	case msgReconnecting:
		ev.Kind = Failed
		if r.up {
			ev.Kind = Lost
		}
		r.up = false
	case msgRegister:
		ev.Kind = Failed
	default:
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	if ev.Kind == Failed {
		ev.Class = Classify(err)
	}
	if err != nil {
		ev.Err = err.Error()
	}
	r.events(ev)
	if ev.Kind == Connected {
		r.joinDo.Do(r.joined)
	}
	return nil
}

func (r *recorder) stopped(err error) {
	ev := Event{Node: r.node, At: time.Now(), Kind: Stopped}
	if err != nil {
		ev.Err = err.Error()
	}
	r.events(ev)
	r.joinDo.Do(r.joined)
}

// Classify sorts the error of a failed attempt to connect.
func Classify(err error) Class {
	switch {
	case err == nil:
		return Error
	case dspool.ErrorCode(err) == dspool.EUnavailable:
		// The agent's connection answered 503: the busy answer of a
		// connection past its address's limit (server.BusyAnswer) is the
		// only one the connect route gives.
		return Busy
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Dropped
	}
	return Error
}

// StandInShare makes dir/share, a directory holding a copy of the marker
// of the share at root: what a node that mounts the share sees of it.
// Simulated nodes run nothing, so the marker is all they need, and they
// may write there whatever user they run as.
func StandInShare(dir, root string) (string, error) {
	id, err := share.ReadID(root)
	if err != nil {
		return "", fmt.Errorf("read the share's marker: %w", err)
	}
	d := filepath.Join(dir, "share")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(d, share.IDFile), []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	return d, nil
}
