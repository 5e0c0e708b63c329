package e2e_test

import (
	"bytes"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCLIWaitsOutTheConnectionCap: a CLI whose connection finds its
// address at the control plane's cap is told to come back later, and does,
// rather than failing.
func TestCLIWaitsOutTheConnectionCap(t *testing.T) {
	up := startUp(t, upConfig{Args: []string{"--max-conns-per-address", "2"}})
	u, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	// Two idle connections hold this address's share of the API.
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	cmd := exec.Command(bin, "node", "list")
	cmd.Env = append(baseEnv(), up.env()...)
	var out bytes.Buffer
	var errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	eventually(t, 10*time.Second, "the CLI to be told the server is busy", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the CLI ended while its address was at the cap (%v), want it to wait and retry\nstderr: %s", err, errb.String())
		default:
		}
		return strings.Contains(errb.String(), "the server is busy")
	})
	for _, c := range held {
		c.Close()
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "default-1") {
			t.Fatalf("node list after the cap cleared: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the CLI did not finish within 20s of its address leaving the cap\nstderr: %s", errb.String())
	}
}
