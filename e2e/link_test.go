package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// nodeIdentity is what an agent keeps in its state directory.
type nodeIdentity struct {
	Credential string `json:"credential"`
	CA         string `json:"ca"`
	ShareID    string `json:"share_id"`
}

func readIdentity(t *testing.T, state string) nodeIdentity {
	t.Helper()
	var id nodeIdentity
	b, err := os.ReadFile(filepath.Join(state, "node.json"))
	if err != nil || json.Unmarshal(b, &id) != nil {
		t.Fatalf("the agent's node.json: %v (%q)", err, b)
	}
	return id
}

// waitExit waits for the agent to exit on its own and returns its stderr.
func (a *agentProc) waitExit(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(within):
		t.Fatalf("the agent did not exit within %s:\n%s", within, tail(a.stderr, 2000))
	}
	b, _ := os.ReadFile(a.stderr)
	return string(b)
}

// TestVerifiedLink: the control plane serves HTTPS with a CA of its own; an
// agent given only a join token verifies it by the token's pin, keeps the
// CA, and is refused by a server that is not the token's; plain HTTP to
// another machine, a share that is not the pool's and a revoked credential
// are refused; an agent rotates its credential at each start; the CLI pins
// the CA at login.
func TestVerifiedLink(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(90)})
	if !strings.HasPrefix(up.URL, "https://") {
		t.Fatalf("dspool up serves %s; want HTTPS by default", up.URL)
	}
	pin := ""
	if b, err := os.ReadFile(up.stdout); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "CA:"); ok {
				pin = strings.Fields(rest)[0]
			}
		}
	}
	if !strings.HasPrefix(pin, "sha256:") {
		t.Fatalf("dspool up printed no CA pin")
	}
	applyPool(t, up, "name: ext\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 2\n")
	join := strings.TrimSpace(cliOK(t, up.env(), "pool", "join-token", "ext"))
	if !strings.HasSuffix(join, "."+strings.TrimPrefix(pin, "sha256:")) {
		t.Fatalf("join token %q does not carry the CA pin %s", join, pin)
	}
	agent := func(t *testing.T, name, token, server, share string) (*agentProc, string) {
		dir := tempDir(t)
		state := filepath.Join(dir, "state")
		return startAgent(t, dir, "--server", server, "--join-token", token, "--pool", "ext", "--name", name,
			"--share", share, "--state", state, "--cpus", "1", "--memory", "1GiB"), state
	}

	// The agent lives as long as the whole test.
	parent := t
	ag, state := agent(t, "e2e-link90", join, up.URL, up.Share)
	t.Run("an agent with only the join token verifies the server and keeps its CA", func(t *testing.T) {
		up.waitNodes(t, "ext", 1)
		id := readIdentity(t, state)
		ca, _ := os.ReadFile(up.CA)
		if strings.TrimSpace(id.CA) != strings.TrimSpace(string(ca)) || id.ShareID == "" {
			t.Fatalf("node.json keeps CA %q and share id %q; want the control plane's CA and the share's id", id.CA, id.ShareID)
		}
	})

	t.Run("it rotates its credential at each start, and the old one goes once the new is used", func(t *testing.T) {
		before := readIdentity(t, state).Credential
		ag.stop(t)
		ag = startAgent(parent, tempDir(parent), "--server", up.URL, "--pool", "ext", "--name", "e2e-link90", "--share", up.Share, "--state", state)
		up.waitNodes(t, "ext", 1)
		after := readIdentity(t, state).Credential
		if after == before || after == "" {
			t.Fatalf("the credential did not change across a restart")
		}
		code, body := getStatusPost(up.URL+"/api/v1/agents/rotate", before)
		if code != 401 {
			t.Fatalf("the old credential after the new one was used: %d %s; want 401", code, body)
		}
	})

	t.Run("a server that is not the token's is refused", func(t *testing.T) {
		wrong := join[:strings.LastIndexByte(join, '.')+1] + strings.Repeat("0", 64)
		bad, _ := agent(t, "e2e-wrong90", wrong, up.URL, up.Share)
		if out := bad.waitExit(t, 30*time.Second); !strings.Contains(out, "is not this pool's control plane") {
			t.Fatalf("an agent with a wrong pin: %q; want it refused, saying what to check", tail(bad.stderr, 800))
		}
	})

	t.Run("an agent whose share is not the pool's is refused", func(t *testing.T) {
		empty := tempDir(t) // an unmounted mount point is an empty directory
		bad, _ := agent(t, "e2e-empty90", join, up.URL, empty)
		if out := bad.waitExit(t, 30*time.Second); !strings.Contains(out, "nothing is mounted there") {
			t.Fatalf("an agent with an empty share: %q; want it refused with what to mount", tail(bad.stderr, 800))
		}
	})

	t.Run("plain HTTP to another machine is refused", func(t *testing.T) {
		bad, _ := agent(t, "e2e-plain90", join, "http://192.0.2.1:8080", up.Share)
		if out := bad.waitExit(t, 30*time.Second); !strings.Contains(out, "plain HTTP to another machine is refused") {
			t.Fatalf("an agent told plain HTTP: %q", tail(bad.stderr, 800))
		}
	})

	t.Run("the CLI pins the CA at login", func(t *testing.T) {
		login := []string{"DSPOOL_CONFIG=" + filepath.Join(tempDir(t), "login.json")}
		tok := up.adminToken(t)
		if _, errs, code := cliWithInput(t, login, tok+"\n", "login", up.URL, "--ca-hash", "sha256:"+strings.Repeat("a", 64)); code == 0 || !strings.Contains(errs, "is not the pool the pin") {
			t.Fatalf("login with a wrong pin: exit %d, %q", code, errs)
		}
		if _, errs, code := cliWithInput(t, login, tok+"\n", "login", up.URL); code == 0 || !strings.Contains(errs, pin) {
			t.Fatalf("login without a pin, not at a terminal: exit %d, %q; want the server's pin to compare", code, errs)
		}
		cmdIn(t, login, tok+"\n", "login", up.URL, "--ca-hash", pin)
		if out := cliOK(t, login, "node", "list"); !strings.Contains(out, "e2e-link90") {
			t.Fatalf("node list after login: %q", out)
		}
	})

	t.Run("a revoked node is cut off at once", func(t *testing.T) {
		cliOK(t, up.env(), "node", "revoke", "e2e-link90")
		if out := ag.waitExit(t, 30*time.Second); !strings.Contains(out, "revoked") {
			t.Fatalf("the revoked node's agent: %q; want it to exit saying its credential was revoked", tail(ag.stderr, 800))
		}
		var nodes []*dspool.Node
		cliJSON(t, up.env(), &nodes, "node", "list", "--pool", "ext")
		if len(connectedReady(nodes)) != 0 {
			t.Fatalf("after revoking: %d ready nodes in ext; want none", len(connectedReady(nodes)))
		}
		if out := cliOK(t, up.env(), "audit", "--action", "node.revoke"); !strings.Contains(out, "e2e-link90") {
			t.Fatalf("audit log: %q; want the revocation", out)
		}
	})
}

// getStatusPost POSTs to url with a bearer token and returns the status
// and body.
func getStatusPost(url, token string) (int, string) {
	req, err := http.NewRequest("POST", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
