package agent

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestDialUpgradeLeavesWhatFollows: with bufSize 0, the server's answer is
// read and nothing after it, even when both arrive in one segment, so the
// socket can be handed to a process as its stdin; with a buffer, what
// follows is in the buffer.
func TestDialUpgradeLeavesWhatFollows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const answer = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: dspool-data/1\r\n\r\n"
	const after = "stdin that came at once"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, answer+after) // one write
				_, _ = io.Copy(io.Discard, c)          // until the client closes
			}()
		}
	}()
	ag := testAgent(t)
	ag.cfg.Server, ag.cred = "http://"+ln.Addr().String(), "credential"
	for _, size := range []int{0, 4096} {
		conn, br, err := ag.dialUpgrade(context.Background(), "/api/v1/agents/data", "dspool-data/1", nil, size)
		if err != nil {
			t.Fatalf("bufSize %d: %v", size, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buffered := br.Buffered()
		rest := make([]byte, len(after)-buffered)
		_, err = io.ReadFull(conn, rest)
		conn.Close()
		switch {
		case size == 0 && (buffered != 0 || err != nil || string(rest) != after):
			t.Errorf("bufSize 0: %d bytes buffered, then %q from the socket (%v); want 0 and %q", buffered, rest, err, after)
		case size > 0 && buffered == 0:
			t.Errorf("bufSize %d: nothing buffered; the test's answer and data did not arrive together", size)
		}
	}
}
