package agent

import (
	"io"
	"os"
	"testing"
	"time"
)

// TestDrainWaitsForWhatTheProcessWrote: after a process exits, its output
// is read on for as long as some of it is left in the pipe, however slowly
// the client takes it; only a pipe left empty (by children that hold it
// open) is given up after drainAfterExit.
func TestDrainWaitsForWhatTheProcessWrote(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := w.Write(make([]byte, 32<<10)); err != nil {
		t.Fatal(err)
	}
	// The client reads the output only after more than drainAfterExit.
	drained := make(chan struct{})
	slow := drainAfterExit + 500*time.Millisecond
	go func() {
		time.Sleep(slow)
		_, _ = io.ReadFull(r, make([]byte, 32<<10))
		close(drained)
	}()
	start := time.Now()
	awaitDrained(drained, func() bool { return unread(r) })
	select {
	case <-drained:
	default:
		t.Fatalf("gave up on the output after %s with 32 KiB of it unread", time.Since(start).Round(time.Millisecond))
	}

	// Nothing left, the pipe held open: given up after drainAfterExit.
	start = time.Now()
	awaitDrained(make(chan struct{}), func() bool { return unread(r) })
	if d := time.Since(start); d < drainAfterExit || d > drainAfterExit+time.Second {
		t.Errorf("an empty pipe held open was given up after %s, want %s", d.Round(time.Millisecond), drainAfterExit)
	}
}
