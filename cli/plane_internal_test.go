package cli

import (
	"io"
	"log/slog"
	"net"
	"testing"
)

// TestLocalAgentsKeepTheirAddress: with HTTPS, the local agents' loopback
// address of one run is the next run's, so that agents that outlived the
// first find the second; when another process holds it, a new one is
// taken, and kept from then on.
func TestLocalAgentsKeepTheirAddress(t *testing.T) {
	data := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func() string {
		t.Helper()
		p := &plane{url: "https://127.0.0.1:1"}
		if err := p.localAgents(data, log); err != nil {
			t.Fatal(err)
		}
		p.agentLn.Close()
		return p.agentURL
	}
	first := run()
	if again := run(); again != first {
		t.Fatalf("the next run's local agents' URL is %s, want the last run's, %s", again, first)
	}
	held, err := net.Listen("tcp", first[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	moved := run()
	if moved == first {
		t.Fatalf("a run took the held address %s", first)
	}
	if again := run(); again != moved {
		t.Fatalf("after a move the next run's URL is %s, want %s", again, moved)
	}
	if p := (&plane{url: "http://127.0.0.1:1"}); p.localAgents(data, log) != nil || p.agentLn != nil {
		t.Fatal("with plain HTTP local agents got a listener of their own")
	}
}
