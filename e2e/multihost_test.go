package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/netns"
)

// hosts are machines made of network namespaces on one bridge (package
// netns): processes run "on" a host with nsenter --net, so only their
// network changes, and cgroups and mounts stay this machine's (the share an
// sshfs mount on a host makes is seen here too, at its own path).
type hosts struct{ *netns.Hosts }

// startHosts makes n hosts, 10.79.0.1 to 10.79.0.n, and removes them when
// the test ends.
func startHosts(t *testing.T, n int) *hosts {
	t.Helper()
	requireRoot(t)
	h, err := netns.Up(netns.Config{Net: "10.79.0", Prefix: "dsph", Switch: "dspsw", N: n})
	if errors.Is(err, netns.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Down(); err != nil {
			t.Errorf("remove the hosts: %v", err)
		}
	})
	return &hosts{h}
}

func (h *hosts) addr(i int) string { return h.Addr(i) }

func (h *hosts) name(i int) string { return h.Name(i) }

// on returns a command that runs on host i.
func (h *hosts) on(i int, name string, args ...string) *exec.Cmd { return h.Command(i, name, args...) }

// startOn starts a long-running process on host i, its output in files,
// killed when the test ends.
func (h *hosts) startOn(t *testing.T, i int, env []string, logPath string, name string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := h.on(i, name, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s on host %d: %v", name, i, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s:\n%s", logPath, tail(logPath, 3000))
		}
	})
	return cmd
}

// cliOn runs the CLI on host i.
func (h *hosts) cliOn(t *testing.T, i int, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.name(i), "--", bin}, args...)...)
	cmd.Env = append(baseEnv(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("dspool %s on host %d timed out", strings.Join(args, " "), i)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("dspool %s on host %d: %v", strings.Join(args, " "), i, err)
	}
	return out.String(), errb.String(), code
}

func (h *hosts) cliOnOK(t *testing.T, i int, env []string, args ...string) string {
	t.Helper()
	out, errs, code := h.cliOn(t, i, env, args...)
	if code != 0 {
		t.Fatalf("dspool %s on host %d: exit %d\n%s%s", strings.Join(args, " "), i, code, out, errs)
	}
	return out
}

// serveShare serves dir from host i over sshfs, mounted as root on hosts
// on at their own mount points (its Mounts, by host).
func (h *hosts) serveShare(t *testing.T, i int, dir string, on ...int) *netns.Share {
	t.Helper()
	s, err := h.ServeShare(i, dir, tempDir(t), on...)
	if errors.Is(err, netns.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("the share: %v", err)
		}
		if t.Failed() {
			t.Logf("%s:\n%s", s.Log, tail(s.Log, 3000))
		}
	})
	return s
}

// TestMultiHost runs a pool across machines: the control plane on h1 with
// the share, agents on h2 and h3 joined over the verified link with only a
// join token, each mounting the share from h1 over sshfs, and users on h4.
func TestMultiHost(t *testing.T) {
	requireRoot(t)
	h := startHosts(t, 4)
	dir := tempDir(t)
	data, share := filepath.Join(dir, "data"), filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	// h1 is the file server too; every machine mounts the share from it,
	// the control plane included, as a network mount with its caches.
	served := h.serveShare(t, 1, share, 1, 2, 3)
	mounts := served.Mounts
	const admin = "e2eadm91"
	removeAccountAfter(t, admin)
	config := writeFile(t, "server-*.yaml", fmt.Sprintf(`listen: %[1]s:8443
ssh_listen: %[1]s:2222
advertise: [%[1]s]
data: %[2]s
share: %[3]s
admin: %[4]s
uid_base: %[5]d
node_grace: 3s
kill_grace: 1s
heartbeat: 200ms
`, h.addr(1), data, mounts[1], admin, uidBase(91)))
	h.startOn(t, 1, nil, filepath.Join(dir, "server.log"), bin, "server", "--config", config)
	var tok []byte
	eventually(t, 30*time.Second, "the server's admin token", func() bool {
		var err error
		tok, err = os.ReadFile(filepath.Join(data, "admin-token"))
		return err == nil
	})
	url := "https://" + h.addr(1) + ":8443"
	adm := []string{"DSPOOL_SERVER=" + url, "DSPOOL_TOKEN=" + strings.TrimSpace(string(tok)), "DSPOOL_CA=" + filepath.Join(data, "tls", "ca.crt"),
		"DSPOOL_CONFIG=" + filepath.Join(dir, "none.json")}
	eventually(t, 30*time.Second, "the API from h4", func() bool { _, _, code := h.cliOn(t, 4, adm, "pool", "list"); return code == 0 })

	applyOn := func(yaml string) {
		f := writeFile(t, "pool-*.yaml", yaml)
		h.cliOnOK(t, 4, adm, "pool", "apply", "-f", f)
	}
	applyOn("name: multi\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 2\n")
	agentOn := func(i int, token, share string) *exec.Cmd {
		state := filepath.Join(tempDir(t), "state")
		t.Cleanup(func() { removeNodeCgroups(state) })
		return h.startOn(t, i, []string{"DSPOOL_JOIN_TOKEN=" + token}, filepath.Join(filepath.Dir(state), "agent.log"), bin, "agent",
			"--server", url, "--pool", "multi", "--name", fmt.Sprintf("h%d", i), "--share", share, "--state", state, "--cpus", "1", "--memory", "1GiB")
	}
	join := strings.TrimSpace(h.cliOnOK(t, 4, adm, "pool", "join-token", "multi"))
	agentOn(2, join, mounts[2])
	agentOn(3, join, mounts[3])
	readyNodes := func() []*dspool.Node {
		var nodes []*dspool.Node
		out, _, code := h.cliOn(t, 4, adm, "node", "list", "-o", "json")
		if code != 0 || jsonInto(out, &nodes) != nil {
			return nil
		}
		return connectedReady(nodes)
	}
	eventually(t, 30*time.Second, "h2 and h3 ready", func() bool { return len(readyNodes()) == 2 })

	const user = "e2emh91"
	removeAccountAfter(t, user)
	h.cliOnOK(t, 4, adm, "user", "create", user)
	utok := strings.TrimSpace(h.cliOnOK(t, 4, adm, "token", "create", "--user", user))
	uenv := []string{"DSPOOL_SERVER=" + url, "DSPOOL_TOKEN=" + utok, "DSPOOL_CA=" + filepath.Join(data, "tls", "ca.crt"),
		"DSPOOL_CONFIG=" + filepath.Join(dir, "none.json")}
	submitOn := func(args ...string) int64 {
		var j dspool.Job
		if out := h.cliOnOK(t, 4, uenv, append([]string{"job", "submit", "-o", "json", "--pool", "multi", "--cpus", "1"}, args...)...); jsonInto(out, &j) != nil {
			t.Fatalf("job submit: %q", out)
		}
		return j.ID
	}
	jobOn := func(id int64) *dspool.Job {
		var j dspool.Job
		out := h.cliOnOK(t, 4, uenv, "job", "show", itoa(id), "-o", "json")
		if err := jsonInto(out, &j); err != nil {
			t.Fatalf("job show: %v: %q", err, out)
		}
		return &j
	}
	home := filepath.Join(share, "home", user)

	t.Run("a job on one machine writes a file that a job on the other reads, and its log reaches h4", func(t *testing.T) {
		// Each job takes a whole node, so the two run on the two machines.
		w := submitOn("--", "sh", "-c", `echo "written on $DSPOOL_NODE" > $HOME/across.txt; while [ ! -e $HOME/read ]; do sleep 0.1; done`)
		eventually(t, 30*time.Second, "the writer to write", func() bool { _, err := os.Stat(filepath.Join(home, "across.txt")); return err == nil })
		r := submitOn("--", "sh", "-c", `echo "on $DSPOOL_NODE: $(cat $HOME/across.txt)"; touch $HOME/read`)
		eventually(t, 30*time.Second, "both jobs to end", func() bool {
			return jobOn(w).State.Terminal() && jobOn(r).State.Terminal()
		})
		wj, rj := jobOn(w), jobOn(r)
		if wj.Node == rj.Node {
			t.Fatalf("both jobs ran on node %s; want one on each machine", wj.Node)
		}
		names := map[string]string{}
		for _, n := range readyNodes() {
			names[n.ID] = n.Name
		}
		want := fmt.Sprintf("on %s: written on %s\n", names[rj.Node], names[wj.Node])
		if logs := h.cliOnOK(t, 4, uenv, "job", "logs", itoa(r)); logs != want {
			t.Fatalf("the reader printed %q; want %q", logs, want)
		}
	})

	t.Run("a log followed from h4 keeps up with a job writing on another machine", func(t *testing.T) {
		id := submitOn("--", "sh", "-c", `for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i"; sleep 0.3; done`)
		eventually(t, 30*time.Second, "the job to run", func() bool { return jobOn(id).State == dspool.JobRunning })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		follow := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+h.name(4), "--", bin, "job", "logs", "-f", itoa(id))
		follow.Env = append(baseEnv(), uenv...)
		out, err := follow.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		first, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(first, "line ") {
			t.Fatalf("the followed log's first line: %q, %v", first, err)
		}
		if st := jobOn(id).State; st != dspool.JobRunning {
			t.Fatalf("the first line came only once the job was %s; want it while the job runs", st)
		}
		rest, _ := io.ReadAll(r)
		_ = follow.Wait()
		if got := first + string(rest); !strings.HasSuffix(got, "line 10\n") || strings.Count(got, "line ") != 10 {
			t.Fatalf("followed log %q; want all ten lines, in order", got)
		}
	})

	t.Run("a secret reaches a job on another machine, and an SSH login from h4 lands on a node with the same home", func(t *testing.T) {
		cmd := h.on(4, bin, "secret", "set", "mh-key")
		cmd.Env = append(baseEnv(), uenv...)
		cmd.Stdin = strings.NewReader("s3cr3t-91\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("secret set: %v: %s", err, out)
		}
		id := submitOn("--secret", "mh-key", "--", "sh", "-c", `echo "got $MH_KEY"`)
		eventually(t, 30*time.Second, "the secret's job to end", func() bool { return jobOn(id).State.Terminal() })
		if logs := h.cliOnOK(t, 4, uenv, "job", "logs", itoa(id)); logs != "got s3cr3t-91\n" {
			t.Fatalf("the job printed %q; want the secret", logs)
		}
		if _, err := exec.LookPath("ssh"); err != nil {
			t.Skip("needs the OpenSSH client")
		}
		keys := tempDir(t)
		key := filepath.Join(keys, "id")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		h.cliOnOK(t, 4, adm, "key", "add", "--user", user, key+".pub")
		ssh := h.on(4, "timeout", "60", "ssh", "-p", "2222", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", user+"+multi@"+h.addr(1), `echo "$DSPOOL_NODE $HOME"; cat ~/across.txt`)
		out, err := ssh.CombinedOutput()
		if err != nil {
			t.Fatalf("ssh from h4: %v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		last := lines[len(lines)-1]
		if len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-2], "h") || !strings.HasPrefix(last, "written on h") {
			t.Fatalf("ssh from h4 printed %q; want the node, its home on the share, and the file a job wrote there", out)
		}

		// Through a gateway apart from the control plane, on h4: the
		// node opens the channel's connections to it across the network.
		gwLog := filepath.Join(keys, "gateway.log")
		h.startOn(t, 4, adm, gwLog, bin, "gateway", "--listen", h.addr(4)+":2223", "--agent-listen", h.addr(4)+":7022")
		eventually(t, 30*time.Second, "the gateway on h4 to listen", func() bool {
			b, _ := os.ReadFile(gwLog)
			return strings.Contains(string(b), "ssh gateway listening")
		})
		apart := h.on(4, "timeout", "60", "ssh", "-p", "2223", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", user+"+multi@"+h.addr(4), `echo "$DSPOOL_NODE"; wc -c`)
		apart.Stdin = strings.NewReader("through h4\n")
		out, err = apart.Output()
		if lines := strings.Fields(string(out)); err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "h") || lines[1] != "11" {
			b, _ := os.ReadFile(gwLog)
			t.Fatalf("ssh through the gateway on h4: %v: %q; want the node and 11 bytes counted (gateway log: %s)", err, out, b)
		}
	})

	t.Run("Jupyter from h4 through the front door runs code in a kernel on a node", func(t *testing.T) {
		requireJupyter(t)
		var nb dspool.Notebook
		if out := h.cliOnOK(t, 4, uenv, "notebook", "start", "--wait", "-o", "json"); jsonInto(out, &nb) != nil {
			t.Fatalf("notebook start: %q", out)
		}
		defer h.cliOn(t, 4, uenv, "notebook", "stop")
		if nb.State != dspool.NotebookReady || nb.URL != url+"/user/"+user+"/" || (nb.NodeName != "h2" && nb.NodeName != "h3") {
			t.Fatalf("notebook start --wait: %+v; want it ready on h2 or h3 at %s/user/%s/", nb, url, user)
		}
		client, err := h.httpOn(4, filepath.Join(data, "tls", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", nb.URL+"api/kernels", strings.NewReader(`{"name":"python3"}`))
		req.Header.Set("Authorization", "Bearer "+utok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("start a kernel from h4: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var kernel struct{ ID string }
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &kernel) != nil || kernel.ID == "" {
			t.Fatalf("start a kernel from h4: %d %s", resp.StatusCode, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ws := "wss" + strings.TrimPrefix(nb.URL, "https") + "api/kernels/" + kernel.ID + "/channels"
		if got := runInKernel(ctx, t, client, ws, utok, user, "import socket\nx = 6*7\nprint(x, socket.gethostname() != '')"); got != "42 True\n" {
			t.Fatalf("the kernel printed %q, want 42 True", got)
		}
		// The kernel keeps its state between connections.
		if got := runInKernel(ctx, t, client, ws, utok, user, "print(x + 1)"); got != "43\n" {
			t.Fatalf("the kernel printed %q, want 43", got)
		}
	})

	t.Run("a share that hangs on one machine: its node takes no new work until it answers, and its heartbeats go on", func(t *testing.T) {
		// Stopping sshfs on h3 hangs every call on h3's mount, as a
		// network share whose server is gone does.
		out, err := exec.Command("pgrep", "-f", "^sshfs .* "+mounts[3]+"$").Output()
		pids := strings.Fields(string(out))
		if err != nil || len(pids) != 1 {
			t.Fatalf("the sshfs of h3: %q %v", out, err)
		}
		stop := func(sig string) {
			if out, err := exec.Command("kill", "-"+sig, pids[0]).CombinedOutput(); err != nil {
				t.Fatalf("kill -%s sshfs: %v: %s", sig, err, out)
			}
		}
		stop("STOP")
		resumed := false
		defer func() {
			if !resumed {
				stop("CONT")
			}
		}()
		var h3 *dspool.Node
		eventually(t, 30*time.Second, "h3 to say its share does not answer", func() bool {
			var nodes []*dspool.Node
			out, _, code := h.cliOn(t, 4, adm, "node", "list", "-o", "json")
			if code != 0 || jsonInto(out, &nodes) != nil {
				return false
			}
			for _, n := range nodes {
				if n.Name == "h3" {
					h3 = n
				}
			}
			return h3 != nil && h3.State == dspool.NodeFailed && strings.Contains(h3.Message, "share has not answered")
		})
		// Its heartbeats go on: the node is failed, not lost, and a job
		// submitted now runs on h2.
		id := submitOn("--", "sh", "-c", `echo "ran on $DSPOOL_NODE"`)
		eventually(t, 30*time.Second, "the job to end", func() bool { return jobOn(id).State.Terminal() })
		if logs := h.cliOnOK(t, 4, uenv, "job", "logs", itoa(id)); logs != "ran on h2\n" {
			t.Fatalf("a job submitted while h3's share hung printed %q; want it to run on h2", logs)
		}
		stop("CONT")
		resumed = true
		eventually(t, 30*time.Second, "h3 to be ready again", func() bool { return len(readyNodes()) == 2 })
	})

	t.Run("a machine cut off: its node is lost, the job runs again on the other, and after the heal nothing runs twice", func(t *testing.T) {
		// The sleep's argument names this run's job and its attempt.
		secs := fmt.Sprintf("%d", 100000+time.Now().UnixNano()%100000)
		id := submitOn("--retries", "1", "--", "sh", "-c", `echo "$DSPOOL_NODE $DSPOOL_ATTEMPT" >> $HOME/runs; exec sleep `+secs+`.$DSPOOL_ATTEMPT`)
		var first *dspool.Job
		eventually(t, 30*time.Second, "the job to run", func() bool { first = jobOn(id); return first.State == dspool.JobRunning })
		cut := map[string]int{"h2": 2, "h3": 3}
		var name string
		for _, n := range readyNodes() {
			if n.ID == first.Node {
				name = n.Name
			}
		}
		host := cut[name]
		if host == 0 {
			t.Fatalf("the job runs on node %s, on no machine of the test", first.Node)
		}
		if out, err := exec.Command("ip", "-n", h.name(host), "link", "set", "eth0", "down").CombinedOutput(); err != nil {
			t.Fatalf("cut the link: %v: %s", err, out)
		}
		healed := false
		heal := func() {
			if !healed {
				healed = true
				_ = exec.Command("ip", "-n", h.name(host), "link", "set", "eth0", "up").Run()
			}
		}
		defer heal()
		eventually(t, 60*time.Second, "the job's second attempt to run on the other machine", func() bool {
			j := jobOn(id)
			return j.Attempt == 2 && j.State == dspool.JobRunning && j.Node != first.Node
		})
		heal()
		eventually(t, 60*time.Second, "the cut machine's node to come back", func() bool { return len(readyNodes()) == 2 })
		running := func(attempt int) bool {
			return exec.Command("pgrep", "-f", fmt.Sprintf("^sleep %s.%d$", secs, attempt)).Run() == nil
		}
		eventually(t, 30*time.Second, "the first attempt's process to be killed once its machine is back", func() bool { return !running(1) })
		if !running(2) {
			t.Fatal("the second attempt is not running any more")
		}
		h.cliOnOK(t, 4, uenv, "job", "cancel", itoa(id))
		eventually(t, 30*time.Second, "the job to end", func() bool { return !running(2) })
	})

	t.Run("an agent given a wrong CA pin, an empty share or a share that keeps no owners is refused", func(t *testing.T) {
		join := strings.TrimSpace(h.cliOnOK(t, 4, adm, "pool", "join-token", "multi"))
		// The share mounted for one account, as SMB with uid= is: every
		// file made through it is that account's.
		const account = "e2eshr91"
		removeAccount(t, account) // what an interrupted run left
		for _, c := range [][]string{{"useradd", "-M", "-s", "/bin/sh", account}, {"usermod", "-p", "*", account}} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
			}
		}
		oneOwner, err := served.MountAs(3, account, "allow_other")
		t.Cleanup(func() {
			// The account goes once its sftp session has.
			_ = served.Unmount(oneOwner)
			poll(10*time.Second, func() bool { return exec.Command("pgrep", "-u", account).Run() != nil })
			removeAccount(t, account)
		})
		if err != nil {
			t.Fatal(err)
		}
		// Mounts of root's that users cannot use: one only root may reach,
		// one where the kernel checks what sshfs shows (every file a user
		// makes is root's there, and cannot be handed to them).
		rootOnly, err := served.MountAs(3, "root")
		if err != nil {
			t.Fatal(err)
		}
		checked, err := served.MountAs(3, "root", "allow_other", "default_permissions")
		if err != nil {
			t.Fatal(err)
		}
		wrong := join[:strings.LastIndexByte(join, '.')+1] + strings.Repeat("0", 64)
		for _, c := range []struct {
			name, token, share, want string
		}{
			{"wrong pin", wrong, mounts[3], "is not this pool's control plane"},
			{"empty share", join, tempDir(t), "nothing is mounted there"},
			{"share that keeps no owners", join, oneOwner, "keeps no owners"},
			{"share only root may reach", join, rootOnly, "users cannot reach the share"},
			{"share whose users' files are root's", join, checked, "keeps no owners"},
		} {
			state := filepath.Join(tempDir(t), "state")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+h.name(3), "--", bin, "agent", "--server", url, "--pool", "multi",
				"--name", "h3-bad", "--share", c.share, "--state", state)
			cmd.Env = append(baseEnv(), "DSPOOL_JOIN_TOKEN="+c.token)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Errorf("%s: %v: %s; want a refusal saying %q", c.name, err, out, c.want)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Logf("%s: %s", c.name, lines[len(lines)-1])
		}
	})
}
