package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestSessionsOutliveUpKill9: a Jupyter server and its kernel, and an SSH
// session's tmux, keep running through a kill -9 of `dspool up`; the next
// `dspool up` on the same data takes them up: the same URL reaches the same
// kernel, which still has the variable set before, and the user's next
// login lands in the same session, where tmux still runs
// (docs/decisions/0017-sessions-outlive-the-control-plane.md).
func TestSessionsOutliveUpKill9(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	requireSSHClients(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("needs tmux (apt-get install tmux)")
	}
	// Fixed addresses, so that the URL is the same after the restart; a
	// grace longer than the restart takes.
	listen, sshListen := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	cfg := upConfig{UIDBase: uidBase(71), Args: []string{"--node-grace", "20s", "--listen", listen, "--ssh-listen", sshListen}}
	up := startUp(t, cfg)
	cfg.Data, cfg.Login = up.Data, up.Login
	ada, adaTok := up.createUser(t, "e2esess71a")
	bob := up.sshUser(t, "e2esess71b")

	var nb dspool.Notebook
	cliJSON(t, up.userEnv(adaTok), &nb, "notebook", "start", "--wait")
	if nb.State != dspool.NotebookReady {
		t.Fatalf("notebook start --wait: %+v", nb)
	}
	base := nb.URL
	req, _ := http.NewRequest("POST", base+"api/kernels", strings.NewReader(`{"name":"python3"}`))
	req.Header.Set("Authorization", "Bearer "+adaTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var kernel struct{ ID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &kernel) != nil || kernel.ID == "" {
		t.Fatalf("start a kernel: %d %s", resp.StatusCode, b)
	}
	ws := "ws" + strings.TrimPrefix(base, "http") + "api/kernels/" + kernel.ID + "/channels"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if got := runInKernel(ctx, t, nil, ws, adaTok, ada.Name, "x = 41\nprint(x)"); got != "41\n" {
		t.Fatalf("the kernel printed %q, want 41", got)
	}

	// An SSH connection holds bob's session while tmux runs in it.
	_, first, _ := bob.sshLongRunning(t, "tmux new -d -s t 'sleep 600' && echo $DSPOOL_SESSION && sleep 600")
	if !strings.HasPrefix(first, "s-") {
		t.Fatalf("ssh printed %q, want its session's id", first)
	}

	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	up2 := startUp(t, cfg)

	eventually(t, 60*time.Second, "the Jupyter server to be taken up", func() bool {
		cliJSON(t, up2.userEnv(adaTok), &nb, "notebook", "status")
		return nb.State == dspool.NotebookReady
	})
	if nb.URL != base {
		t.Errorf("the notebook's URL after the restart: %s, want %s", nb.URL, base)
	}
	if got := runInKernel(ctx, t, nil, ws, adaTok, ada.Name, "print(x + 1)"); got != "42\n" {
		t.Fatalf("the kernel printed %q after the restart, want 42 (its state kept)", got)
	}

	// Bob's session, whose connection the kill dropped, is still active.
	var sessions []*dspool.Session
	cliJSON(t, up2.userEnv(bob.token), &sessions, "session", "list")
	if len(sessions) != 1 || sessions[0].ID != first || sessions[0].State == dspool.SessionEnded {
		t.Errorf("bob's sessions after the restart: %s, want %s alone, active", mustJSON(t, sessions), first)
	}
	// The next login lands in the same session, and finds tmux.
	var out, errs string
	var code int
	eventually(t, 60*time.Second, "bob's next login to find his tmux", func() bool {
		out, errs, code = bob.ssh(t, bob.Name, nil, "tmux has-session -t t && echo $DSPOOL_SESSION")
		return code == 0
	})
	if got := strings.TrimSpace(out); got != first {
		t.Errorf("bob's next login landed in session %q, want %q (stderr %q)", got, first, errs)
	}
}
