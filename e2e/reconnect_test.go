package e2e_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
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
	// Two idle connections hold this address's share of the API: each is
	// one the server answered 200 on, and keeps open. One that came while
	// the agent's own connection was still counted is turned away, and
	// another takes its place.
	var held []net.Conn
	eventually(t, 10*time.Second, "two connections held at the server", func() bool {
		c, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: holder\r\n\r\n"); err != nil {
			c.Close()
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			c.Close()
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetDeadline(time.Time{})
		held = append(held, c)
		return len(held) == 2
	})
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// The server counts a connection once it has accepted it: wait until
	// a third one is turned away, so that the CLI's is too.
	eventually(t, 10*time.Second, "the server to count the held connections", func() bool {
		c, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"); err != nil {
			return false
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.Contains(line, " 503 ")
	})
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

// TestWaitOutlivesAControlPlaneRestart: `job submit --wait` keeps waiting
// through a restart of the control plane, reconnecting, and ends with the
// job.
func TestWaitOutlivesAControlPlaneRestart(t *testing.T) {
	addr := freeAddr(t)
	first := startUp(t, upConfig{UIDBase: uidBase(143), Args: []string{"--listen", addr}})
	_, token := first.createUser(t, "e2ewait143")
	env := first.userEnv(token)
	// A pool with no nodes: the job waits in its queue through the restart.
	applyPool(t, first, "name: empty\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 0\n")
	cmd := exec.Command(bin, "job", "submit", "--wait", "--pool", "empty", "--", "true")
	cmd.Env = append(baseEnv(), env...)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var list []dspool.Job
	eventually(t, 10*time.Second, "the job to be queued", func() bool {
		cliJSON(t, env, &list, "job", "list")
		return len(list) == 1
	})
	first.Stop()
	eventually(t, 10*time.Second, "the waiting CLI to say it lost the server", func() bool {
		return strings.Contains(errb.String(), "reconnecting")
	})
	startUp(t, upConfig{UIDBase: uidBase(143), Data: first.Data, Login: first.Login, Args: []string{"--listen", addr}})
	cliOK(t, env, "job", "cancel", itoa(list[0].ID))
	select {
	case err := <-done:
		if !strings.Contains(errb.String(), "reconnected") {
			t.Errorf("the waiting CLI did not say it reconnected\nstderr: %s", errb.String())
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(out.String()+errb.String(), "cancelled") {
			t.Errorf("the waiting CLI ended with %v, want it to report the job cancelled\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the waiting CLI did not end with its job\nstderr: %s", errb.String())
	}
}
