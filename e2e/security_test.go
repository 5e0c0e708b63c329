package e2e_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"golang.org/x/sys/unix"
)

// canaryFile writes a file only root may read, holding a random word that
// must never reach a user, and returns its path and the word.
func canaryFile(t *testing.T) (path, word string) {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	word = "CANARY-" + hex.EncodeToString(b)
	dir := tempDir(t)
	path = filepath.Join(dir, "canary")
	if err := os.WriteFile(path, []byte(word+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, word
}

// logs runs `dspool job logs ID` and returns what it printed, both streams.
func logs(t *testing.T, env []string, id int64) (string, int) {
	t.Helper()
	out, errs, code := cli(t, env, "job", "logs", itoa(id))
	return out + errs, code
}

// TestShareAttacks replays, as an ordinary user, each way a user could make
// the control plane or an agent (root) read, write or wait on a file for
// them through the share, and checks that each is refused with a clear
// error and nothing of root's leaks.
func TestShareAttacks(t *testing.T) {
	requireRoot(t)
	canary, word := canaryFile(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secretsKey := base64.StdEncoding.EncodeToString(key)
	up := startUp(t, upConfig{UIDBase: uidBase(48), Env: []string{"DSPOOL_SECRETS_KEY=" + secretsKey}})
	mallory, tok := up.createUser(t, "e2eatk48m")
	menv := up.userEnv(tok)
	noCanary := func(t *testing.T, what, s string) {
		t.Helper()
		if strings.Contains(s, word) {
			t.Fatalf("%s shows root's canary: %q", what, s)
		}
	}
	jobDir := func(id int64) string { return filepath.Join(up.Share, "jobs", itoa(id)) }
	ran := func(t *testing.T, script string, args ...string) int64 {
		t.Helper()
		id := submit(t, menv, append(args, "--", "sh", "-c", script)...)
		waitState(t, menv, id, dspool.JobSucceeded, 30*time.Second)
		return id
	}

	t.Run("a log replaced by a symlink to root's file is not followed", func(t *testing.T) {
		id := ran(t, "ln -sf "+canary+" $DSPOOL_JOB_DIR/attempt-1.log")
		for _, env := range [][]string{menv, up.env()} {
			out, code := logs(t, env, id)
			noCanary(t, "job logs", out)
			if code == 0 || !strings.Contains(out, "is a symlink, which is not followed") {
				t.Fatalf("job logs: exit %d, %q; want a refusal naming the symlink", code, out)
			}
		}
	})

	t.Run("a log the job removed is said to be missing", func(t *testing.T) {
		id := ran(t, "rm $DSPOOL_JOB_DIR/attempt-1.log")
		out, code := logs(t, menv, id)
		if code == 0 || !strings.Contains(out, "has no log of attempt 1") {
			t.Fatalf("job logs: exit %d, %q; want it to say the log is missing", code, out)
		}
	})

	t.Run("hard links, devices and FIFOs as logs are refused at once", func(t *testing.T) {
		id := ran(t, "echo mine > $DSPOOL_JOB_DIR/other")
		log := filepath.Join(jobDir(id), "attempt-1.log")
		plant := []struct {
			name, want string
			make       func() error
		}{
			// A share without protected_hardlinks lets a user link root's
			// files; root plants it here.
			{"hard link to root's file", "belongs to uid 0", func() error { return os.Link(canary, log) }},
			{"hard link to the user's own file", "has 2 hard links", func() error { return os.Link(filepath.Join(jobDir(id), "other"), log) }},
			{"device", "is a character device", func() error {
				if err := unix.Mknod(log, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					return err
				}
				return os.Chown(log, mallory.UID, mallory.GID)
			}},
			{"FIFO", "is a FIFO", func() error {
				if err := unix.Mkfifo(log, 0o666); err != nil {
					return err
				}
				return os.Chown(log, mallory.UID, mallory.GID)
			}},
		}
		for _, p := range plant {
			if err := os.Remove(log); err != nil {
				t.Fatal(err)
			}
			if err := p.make(); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			start := time.Now()
			out, code := logs(t, menv, id)
			noCanary(t, p.name, out)
			if code == 0 || !strings.Contains(out, p.want) {
				t.Errorf("%s: exit %d, %q; want a refusal saying %q", p.name, code, out, p.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s: job logs took %s", p.name, d)
			}
		}
		// Many abandoned requests for a FIFO's log hold nothing: each is
		// answered at once, and the API stays quick.
		var wg sync.WaitGroup
		errs := make(chan string, 200)
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// 200 TLS handshakes at once take seconds on a loaded
				// machine under -race; a request that waited on the FIFO
				// would never be answered.
				code, body := getStatus(up.URL+"/api/v1/jobs/"+itoa(id)+"/logs?follow=true", tok, 20*time.Second)
				if code != http.StatusConflict {
					errs <- fmt.Sprintf("status %d (%s)", code, body)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatalf("a request for a FIFO's log: %s; want 409 at once", e)
		}
		start := time.Now()
		if code, _ := getStatus(up.URL+"/healthz", "", 2*time.Second); code != http.StatusOK {
			t.Fatalf("/healthz: %d", code)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("/healthz took %s after the FIFO requests", d)
		}
	})

	t.Run("a FIFO placed as the next attempt's log fails that attempt, and holds nothing", func(t *testing.T) {
		id := submit(t, menv, "--retries", "1", "--", "sh", "-c", "mkfifo $DSPOOL_JOB_DIR/attempt-2.log; exit 1")
		j := waitState(t, menv, id, dspool.JobFailed, 30*time.Second)
		if j.Attempt != 2 || j.Reason != dspool.ReasonStartError || !strings.Contains(j.Message, "is a FIFO") {
			t.Fatalf("job: attempt %d, reason %s, %q; want attempt 2 failing to start on the FIFO", j.Attempt, j.Reason, j.Message)
		}
		// The node is free: the next job runs.
		ran(t, "true")
	})

	t.Run("a symlinked directory in the working directory is not followed", func(t *testing.T) {
		target := tempDir(t)
		ran(t, "ln -s "+target+" $HOME/elsewhere")
		id := submit(t, menv, "--workdir", "elsewhere/sub", "--", "true")
		j := waitState(t, menv, id, dspool.JobFailed, 30*time.Second)
		if j.Reason != dspool.ReasonStartError || !strings.Contains(j.Message, "symlink") {
			t.Fatalf("job: %s %q; want a start error naming the symlink", j.Reason, j.Message)
		}
		if entries, _ := os.ReadDir(target); len(entries) != 0 {
			t.Fatalf("the link's target got %d entries; want none", len(entries))
		}
	})

	t.Run("the command is looked up as the user", func(t *testing.T) {
		hidden := filepath.Join(tempDir(t), "private")
		if err := os.Mkdir(hidden, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hidden, "rootprog"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		id := submit(t, menv, "--env", "PATH="+hidden+":/usr/bin:/bin", "--", "rootprog")
		j := waitState(t, menv, id, dspool.JobFailed, 30*time.Second)
		if !strings.Contains(j.Message, "command not found") {
			t.Fatalf("job: %q; want command not found: the user cannot see into %s", j.Message, hidden)
		}
	})

	t.Run("a rename race on the log never shows root's file", func(t *testing.T) {
		// The job swaps its log between a file of its own and a link to the
		// canary as fast as it can while the test reads the log.
		script := fmt.Sprintf(`cd $DSPOOL_JOB_DIR; echo mine > f; ln -s %s l
python3 -c '
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
end = time.time() + 15
while time.time() < end and not os.path.exists("stop"):
    libc.renameat2(-100, b"f", -100, b"attempt-1.log", 2)
    libc.renameat2(-100, b"l", -100, b"attempt-1.log", 2)
'`, canary)
		id := submit(t, menv, "--", "sh", "-c", script)
		eventually(t, 30*time.Second, "the swapping job to start", func() bool {
			_, err := os.Lstat(filepath.Join(jobDir(id), "l"))
			return err == nil
		})
		var shown, refused int
		deadline := time.Now().Add(8 * time.Second)
		for n := 0; n < 2000 && time.Now().Before(deadline); n++ {
			code, body := getStatus(up.URL+"/api/v1/jobs/"+itoa(id)+"/logs", tok, 5*time.Second)
			noCanary(t, "a log read during the race", body)
			switch code {
			case http.StatusOK:
				shown++
			case http.StatusConflict:
				refused++
			}
		}
		_ = os.WriteFile(filepath.Join(jobDir(id), "stop"), nil, 0o644)
		waitState(t, menv, id, dspool.JobSucceeded, 30*time.Second)
		t.Logf("during the race: %d logs shown, %d refused", shown, refused)
		if shown+refused == 0 {
			t.Fatal("no log request was answered during the race")
		}
	})

	t.Run("a user's temporary files go with their last work on the node", func(t *testing.T) {
		name := "e2eatk48-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		id := ran(t, fmt.Sprintf("echo x > /tmp/%[1]s; echo y > /dev/shm/%[1]s; ln -s %[2]s /tmp/%[1]s-link; mkdir /tmp/%[1]s-dir; ln -s / /tmp/%[1]s-dir/root", name, canary))
		paths := []string{"/tmp/" + name, "/dev/shm/" + name, "/tmp/" + name + "-link", "/tmp/" + name + "-dir"}
		eventually(t, 20*time.Second, fmt.Sprintf("job %d's temporary files to go", id), func() bool {
			for _, p := range paths {
				if _, err := os.Lstat(p); err == nil {
					return false
				}
			}
			return true
		})
		if b, err := os.ReadFile(canary); err != nil || !strings.Contains(string(b), word) {
			t.Fatalf("the canary a removed link pointed to: %q, %v", b, err)
		}
	})

	t.Run("secrets are out of reach of jobs", func(t *testing.T) {
		pids := []int{up.cmd.Process.Pid}
		out, _ := exec.Command("pgrep", "-f", "dspool agent").Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		if len(pids) < 2 {
			t.Fatalf("found no agent process (pgrep: %q)", out)
		}
		for _, pid := range pids {
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err != nil {
				continue // an agent of another test that has gone
			}
			for _, k := range []string{"DSPOOL_SECRETS_KEY=", "DSPOOL_JOIN_TOKEN="} {
				if bytes.Contains(env, []byte(k)) {
					t.Errorf("process %d's environment block holds %s", pid, k)
				}
			}
			if bytes.Contains(env, []byte(secretsKey)) {
				t.Errorf("process %d's environment block holds the secrets key", pid)
			}
		}
		// A job of the user tries every process's environment and memory.
		probe := `for p in /proc/[0-9]*; do cat $p/environ $p/mem 2>/dev/null | grep -a -c DSPOOL_SECRETS_KEY; done | grep -v '^0$' | head -1; echo done`
		id := ran(t, probe)
		out2, _ := logs(t, menv, id)
		if strings.TrimSpace(out2) != "done" {
			t.Fatalf("a job found the secrets key's variable in some process: %q", out2)
		}
		if st, err := os.Stat(up.Login); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("root's CLI login %s: %v, %v; want mode 0600", up.Login, st, err)
		}
	})

	t.Run("an agent is not dumpable, whoever runs it", func(t *testing.T) {
		dir := tempDir(t)
		for _, d := range []string{"state", "share"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(dir, d), 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
		// The binary where another user may run it.
		exe := filepath.Join(dir, "dspool")
		if b, err := os.ReadFile(bin); err != nil || os.WriteFile(exe, b, 0o755) != nil {
			t.Fatalf("copy the binary: %v", err)
		}
		cmd := exec.Command(exe, "agent", "--server", "http://127.0.0.1:1", "--state", filepath.Join(dir, "state"), "--share", filepath.Join(dir, "share"))
		cmd.Env = append(baseEnv(), "DSPOOL_JOIN_TOKEN=dspj_e2e-not-a-token", "XDG_RUNTIME_DIR="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		logPath := filepath.Join(dir, "agent.log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd.Stderr = logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		environ := fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)
		eventually(t, 10*time.Second, "the agent to try to register", func() bool {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), "register")
		})
		var st unix.Stat_t
		if err := unix.Stat(environ, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 {
			t.Fatalf("%s belongs to uid %d: the agent (uid 65534) is dumpable", environ, st.Uid)
		}
		if b, _ := os.ReadFile(environ); bytes.Contains(b, []byte("not-a-token")) {
			t.Fatal("the agent's environment block holds its join token")
		}
	})

	t.Run("a second connection with a node's credential is refused and audited", func(t *testing.T) {
		nodes := up.waitNodes(t, "", 1)
		b, err := os.ReadFile(filepath.Join(up.Data, "agents", nodes[0].Name, "node.json"))
		if err != nil {
			t.Fatal(err)
		}
		var id struct {
			Credential string `json:"credential"`
		}
		if err := json.Unmarshal(b, &id); err != nil || id.Credential == "" {
			t.Fatalf("node.json: %v", err)
		}
		req, _ := http.NewRequest("GET", up.URL+"/api/v1/agents/connect", nil)
		req.Header.Set("Authorization", "Bearer "+id.Credential)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", api.AgentUpgrade)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "connected already") {
			t.Fatalf("second connection: %d %s; want 409", resp.StatusCode, body)
		}
		up.waitNodes(t, "", 1) // the real agent stays connected
		out := cliOK(t, up.env(), "audit", "--action", "node.connect")
		if !strings.Contains(out, "failure") || !strings.Contains(out, nodes[0].Name) {
			t.Fatalf("audit log: %q; want the refused connection", out)
		}
	})

	t.Run("no route shows the canary", func(t *testing.T) {
		// Links to the canary at every place of the user's on the share
		// that the control plane or an agent reads or writes.
		id := ran(t, fmt.Sprintf(`cd $DSPOOL_JOB_DIR; for n in 1 2 3; do ln -sf %[1]s attempt-$n.log; done
mkdir -p $HOME/notebooks; ln -sfn %[1]s $HOME/notebooks/remote; ln -sf %[1]s $HOME/.bashrc`, canary))
		next := submit(t, menv, "--", "true") // its log is made beside the links
		waitState(t, menv, next, dspool.JobSucceeded, 30*time.Second)
		for _, env := range []struct {
			who   string
			token string
		}{{"the user", tok}, {"the admin", up.adminToken(t)}} {
			for _, path := range getRoutes(t, up, id, mallory.Name) {
				code, body := getStatus(up.URL+path, env.token, 10*time.Second)
				noCanary(t, fmt.Sprintf("GET %s as %s (%d)", path, env.who, code), body)
			}
		}
		// A session on the node: the agent makes the user's home and the
		// notebook link beside the user's links, as the user.
		if exec.Command("/usr/bin/python3", "-c", "import jupyter_server, ipykernel").Run() == nil {
			ran(t, fmt.Sprintf("rm -rf $HOME/notebooks; ln -s %s $HOME/notebooks", filepath.Dir(canary)))
			before, _ := os.ReadDir(filepath.Dir(canary))
			cliOK(t, menv, "notebook", "start", "--wait")
			cliOK(t, menv, "notebook", "stop")
			if after, _ := os.ReadDir(filepath.Dir(canary)); len(after) != len(before) {
				t.Fatalf("the directory a user's ~/notebooks linked to went from %d to %d entries", len(before), len(after))
			}
		}
		if b, err := os.ReadFile(canary); err != nil || !strings.Contains(string(b), word) {
			t.Fatalf("the canary: %q, %v", b, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(canary, &st); err != nil || st.Uid != 0 || st.Mode&0o777 != 0o600 {
			t.Fatalf("the canary's owner or mode changed: uid %d mode %o", st.Uid, st.Mode&0o777)
		}
	})

	t.Run("all dspool work on the machine is capped below it", func(t *testing.T) {
		b, _ := os.ReadFile("/proc/sys/kernel/pid_max")
		pidMax, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		for _, f := range []struct{ path, limit string }{
			{"/sys/fs/cgroup/pids/dspool/pids.max", strconv.Itoa(pidMax)},
			{"/sys/fs/cgroup/dspool/pids.max", strconv.Itoa(pidMax)},
		} {
			v, err := os.ReadFile(f.path)
			if err != nil {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(v)))
			want, _ := strconv.Atoi(f.limit)
			if err != nil || n >= want {
				t.Errorf("%s = %q; want a number below %d", f.path, v, want)
			}
		}
	})
}

// getRoutes lists a GET of every route of the API (from its OpenAPI
// document) and the web page, with job id and the user's name in them.
func getRoutes(t *testing.T, up *upProc, id int64, user string) []string {
	t.Helper()
	_, body := getStatus(up.URL+"/api/v1/openapi.json", "", 10*time.Second)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("{id}", itoa(id), "{name}", user, "{user}", user, "{key}", "x")
	paths := []string{"/", "/healthz"}
	for p, ops := range doc.Paths {
		if _, ok := ops["get"]; ok && !strings.HasPrefix(p, "/api/v1/agents/") {
			paths = append(paths, r.Replace(p))
		}
	}
	for n := 1; n <= 3; n++ {
		paths = append(paths, fmt.Sprintf("/api/v1/jobs/%d/logs?attempt=%d", id, n))
	}
	return paths
}

// getStatus GETs url with a bearer token (none when "") and returns the
// status and body; 0 when there was no answer within timeout.
func getStatus(url, token string, timeout time.Duration) (int, string) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
