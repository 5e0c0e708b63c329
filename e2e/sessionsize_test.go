package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// limitsProbe prints, from inside a session, the limits of the cgroups it
// runs in (memory and cpu quota), what dspool tells it of its size, and
// which of the fake GPUs in dev it can open.
func limitsProbe(dev string) string {
	return `cg() { awk -F: -v c="$1" '{n=split($2,a,","); for(i=1;i<=n;i++) if(a[i]==c) print $3}' /proc/self/cgroup; }
echo "mem=$(cat /sys/fs/cgroup/memory$(cg memory)/memory.limit_in_bytes) quota=$(cat /sys/fs/cgroup/cpu$(cg cpu)/cpu.cfs_quota_us)"
echo "env=$DSPOOL_CPUS/$DSPOOL_MEMORY/$CUDA_VISIBLE_DEVICES"
for g in 0 1; do if head -c1 ` + dev + `/nvidia$g >/dev/null 2>&1; then echo "gpu$g:open"; else echo "gpu$g:denied"; fi; done`
}

// TestSizedSessions logs in through the real OpenSSH client with sessions
// of the sizes the pool defines (USER+POOL+PROFILE) or that the login
// names (USER+POOL+8cpu-...), and with dspool shell --cpus: each session's
// processes run in a cgroup with its limits, hold only its GPUs, and the
// login says where it landed.
func TestSizedSessions(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	bin, dev := fakeGPUs(t)
	// GPU 0 works from the start (the agents sample it as they start);
	// the last subtest stops it.
	util := filepath.Join(bin, "util")
	if err := os.WriteFile(util, []byte("0, 87\n1, 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(tempDir(t), "fake_jupyter.py")
	src, err := os.ReadFile("testdata/fake_jupyter.py")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, src, 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(241),
		Env: []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "DSPOOL_GPU_DEV_DIR=" + dev}})
	u := up.sshUser(t, "e2esize241")
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: big
  node: {cpus: 2, memory: 2GiB, gpus: 2}
  count: 1
  sessions:
    cpus: 1
    memory: 512MiB
    idle: 1h
    default: true
    jupyter: [/usr/bin/python3, `+fake+`]
    profiles:
    - {name: large, cpus: 2, memory: 1GiB, description: for big data frames}
    - {name: gpu, cpus: 1, memory: 768MiB, gpus: 1, gpu_type: a100}
    - {name: quick, time: 3s}
- name: brief
  node: {cpus: 1, memory: 1GiB}
  count: 1
  work: [interactive]
  sessions: {cpus: 1, memory: 256MiB, idle: 2s}
- name: briefgpu
  node: {cpus: 1, memory: 1GiB, gpus: 2}
  count: 1
  work: [interactive]
  sessions: {cpus: 1, memory: 256MiB, idle: 2s}
`))
	up.waitNodes(t, "big", 1)
	up.waitNodes(t, "brief", 1)
	up.waitNodes(t, "briefgpu", 1)
	probe := limitsProbe(dev)

	for _, c := range []struct{ name, login, want string }{
		{"the pool's own size", u.Name + "+big", "mem=536870912 quota=100000\nenv=1/536870912/\ngpu0:denied\ngpu1:denied\n"},
		{"a profile", u.Name + "+big+large", "mem=1073741824 quota=200000\nenv=2/1073741824/\ngpu0:denied\ngpu1:denied\n"},
		{"a size inline", u.Name + "+big+1cpu-768mib", "mem=805306368 quota=100000\nenv=1/805306368/\ngpu0:denied\ngpu1:denied\n"},
		{"a profile with a GPU", u.Name + "+big+gpu", "mem=805306368 quota=100000\nenv=1/805306368/0\ngpu0:open\ngpu1:denied\n"},
		{"a GPU inline", u.Name + "+big+1gpu", "mem=536870912 quota=100000\nenv=1/536870912/0\ngpu0:open\ngpu1:denied\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := u.ssh(t, c.login, nil, probe)
			if code != 0 || out != c.want {
				t.Errorf("ssh %s: exit %d, stdout %q, stderr %q; want stdout %q", c.login, code, out, errs, c.want)
			}
		})
	}

	t.Run("dspool shell --cpus --memory --gpus", func(t *testing.T) {
		env := append(up.userEnv(u.token), "DSPOOL_SSH_COMMAND=ssh "+strings.Join(u.sshOpts(up.SSHPort), " "))
		out := cliOK(t, env, "shell", "--ssh", "127.0.0.1:"+up.SSHPort, "--pool", "big", "--cpus", "2", "--memory", "1536MiB", "--gpus", "2", "--time", "1h", "--", probe)
		if want := "mem=1610612736 quota=200000\nenv=2/1610612736/0,1\ngpu0:open\ngpu1:open\n"; out != want {
			t.Errorf("dspool shell printed %q, want %q", out, want)
		}
		_, errs, code := cli(t, env, "shell", "--ssh", "127.0.0.1:"+up.SSHPort, "--pool", "big", "--cpus", "1.5", "--", "true")
		if code == 0 || !strings.Contains(errs, "--cpus") {
			t.Errorf("dspool shell --cpus 1.5: exit %d, stderr %q; want a refusal naming --cpus", code, errs)
		}
	})

	t.Run("sessions are listed with their size and GPUs", func(t *testing.T) {
		var ss []dspool.Session
		cliJSON(t, up.userEnv(u.token), &ss, "session", "list", "--ended")
		sizes := map[string][]int{}
		for _, x := range ss {
			sizes[x.Size] = x.GPUIndices
		}
		for size, gpus := range map[string][]int{"large": nil, "gpu": {0}, "1cpu-768mib": nil, "1cpu-512mib-1gpu": {0}} {
			got, ok := sizes[size]
			if !ok || fmt.Sprint(got) != fmt.Sprint(gpus) {
				t.Errorf("session list --ended: size %q with GPUs %v (listed: %v); want it, with GPUs %v", size, got, ok, gpus)
			}
		}
	})

	t.Run("a Jupyter server of a profile", func(t *testing.T) {
		env := up.userEnv(u.token)
		var nb dspool.Notebook
		cliJSON(t, env, &nb, "notebook", "start", "--pool", "big", "--profile", "gpu", "--wait")
		var ss []dspool.Session
		cliJSON(t, env, &ss, "session", "list")
		found := false
		for _, x := range ss {
			if x.ID == nb.Session {
				found = true
				if x.Kind != dspool.SessionJupyter || x.Size != "gpu" || x.CPUs != 1000 || x.Memory != 768<<20 || fmt.Sprint(x.GPUIndices) != "[0]" {
					t.Errorf("the Jupyter server's session is %+v: want kind jupyter, size gpu, 1 cpu, 768MiB and GPU 0", x)
				}
			}
		}
		if !found || nb.State != dspool.NotebookReady {
			t.Errorf("notebook start --profile gpu: %+v; its session listed: %v", nb, found)
		}
		cliOK(t, env, "notebook", "stop")
		if _, errs, code := cli(t, env, "notebook", "start", "--pool", "big", "--profile", "huge"); code == 0 || !strings.Contains(errs, `size: pool big has no session profile "huge"`) {
			t.Errorf("notebook start --profile huge: exit %d, stderr %q; want a refusal naming the size", code, errs)
		}
	})

	t.Run("the web page offers the pools' profiles and starts one", func(t *testing.T) {
		cmdIn(t, up.userEnv(u.token), "correct horse battery\n", "user", "passwd")
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: testCAs.config()},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		do := func(method, path string, hdr map[string]string, body string) (int, string) {
			t.Helper()
			req, _ := http.NewRequest(method, up.URL+path, strings.NewReader(body))
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := browser.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := do("POST", "/login", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			url.Values{"username": {u.Name}, "password": {"correct horse battery"}}.Encode()); code != http.StatusSeeOther {
			t.Fatalf("web login: %d", code)
		}
		_, page := do("GET", "/", nil, "")
		m := regexp.MustCompile(`<meta name="xsrf" content="([^"]+)">`).FindStringSubmatch(page)
		if m == nil || !strings.Contains(page, `<option value="big+large">large in big: 2 cpus, 1GiB memory (for big data frames)</option>`) ||
			!strings.Contains(page, `<option value="big+gpu">gpu in big: 1 cpu, 768MiB memory, 1 gpu of type a100</option>`) ||
			!strings.Contains(page, `<option value="big+quick">quick in big: 1 cpu, 512MiB memory, for at most 3s</option>`) {
			t.Fatalf("the page does not offer pool big's profiles:\n%s", page)
		}
		hdr := map[string]string{"X-XSRF-Token": m[1], "Content-Type": "application/json"}
		code, body := do("POST", "/api/v1/notebook", hdr, `{"pool": "big", "profile": "large"}`)
		if code != http.StatusAccepted {
			t.Fatalf("the page's start with profile large: %d %s", code, body)
		}
		var nb dspool.Notebook
		eventually(t, 30*time.Second, "the Jupyter server to serve", func() bool {
			cliJSON(t, up.userEnv(u.token), &nb, "notebook", "status")
			return nb.State == dspool.NotebookReady
		})
		var x dspool.Session
		cliJSON(t, up.userEnv(u.token), &x, "session", "show", nb.Session)
		if x.Size != "large" || x.CPUs != 2000 || x.Memory != 1<<30 {
			t.Errorf("the page's Jupyter server runs in session %+v: want size large, 2 cpus, 1GiB", x)
		}
		cliOK(t, up.userEnv(u.token), "notebook", "stop")
	})

	t.Run("the login says where it landed", func(t *testing.T) {
		out, errs, code := u.ssh(t, u.Name+"+big+large", strings.NewReader("exit\n"), "-tt")
		all := out + errs
		for _, want := range []string{"node big-1 of pool big", "size large", "2 cpus, 1GiB memory", "Idle limit: 1h0m0s"} {
			if !strings.Contains(all, want) {
				t.Errorf("ssh -tt %s+big+large: exit %d; the login does not say %q:\n%s", u.Name, code, want, all)
			}
		}
	})

	t.Run("a size the pool cannot give is refused with what it offers", func(t *testing.T) {
		for _, c := range []struct{ size, says string }{
			{"huge", "its profiles are large, gpu"},
			{"8cpu", "8 cpus is more than a node of the pool has"},
			{"3gpu", "more than a node of the pool has (2)"},
		} {
			_, errs, code := u.ssh(t, u.Name+"+big+"+c.size, nil, "true")
			if code == 0 || !strings.Contains(errs, c.says) {
				t.Errorf("ssh %s+big+%s: exit %d, stderr %q; want a refusal that says %q", u.Name, c.size, code, errs, c.says)
			}
		}
	})

	t.Run("a session's GPUs count against its user's limit, as a job's do", func(t *testing.T) {
		cliOK(t, up.env(), "user", "limits", u.Name, "--gpus", "1")
		defer cliOK(t, up.env(), "user", "limits", u.Name, "--gpus", "none")
		if out, errs, code := u.ssh(t, u.Name+"+big+1gpu", nil, "echo $CUDA_VISIBLE_DEVICES"); code != 0 || out != "0\n" {
			t.Errorf("a 1-GPU session under a 1-GPU limit: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		_, errs, code := u.ssh(t, u.Name+"+big+2gpu", nil, "true")
		if code == 0 || !strings.Contains(errs, "a session (1 cpu, 512MiB, 2 gpus) would go over a limit") {
			t.Errorf("a 2-GPU session over a 1-GPU limit: exit %d, stderr %q; want a refusal that names the limit", code, errs)
		}
	})

	t.Run("a session is ended when its time runs out", func(t *testing.T) {
		began := time.Now()
		_, errs, code := u.ssh(t, u.Name+"+big+quick", nil, "sleep 50")
		if took := time.Since(began); code == 0 || took > 30*time.Second || !strings.Contains(errs, "its time limit of 3s ran out") {
			t.Errorf("a session of profile quick (time 3s) ended after %s with exit %d, stderr %q: want it ended at its time limit, saying so", took, code, errs)
		}
	})

	t.Run("an idle session is ended at the pool's idle limit", func(t *testing.T) {
		began := time.Now()
		_, errs, code := u.ssh(t, u.Name+"+brief", nil, "sleep 50")
		if took := time.Since(began); code == 0 || took > 30*time.Second {
			t.Errorf("an idle session of pool brief (idle 2s) ended after %s with exit %d (stderr %q): want it ended within seconds", took, code, errs)
		}
		if !strings.Contains(errs, "idle for 2s") {
			t.Errorf("stderr %q does not say the session was idle", errs)
		}
	})

	t.Run("a session is not idle while its GPU works, and is ended once it stops", func(t *testing.T) {
		type result struct {
			errs string
			code int
		}
		done := make(chan result, 1)
		began := time.Now()
		go func() {
			_, errs, code := u.ssh(t, u.Name+"+briefgpu+1gpu", nil, "sleep 55")
			done <- result{errs, code}
		}()
		select {
		case r := <-done:
			t.Fatalf("a session whose GPU works ended after %s (exit %d, stderr %q): want it kept past its idle limit of 2s", time.Since(began), r.code, r.errs)
		case <-time.After(12 * time.Second):
		}
		if err := os.Remove(util); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		select {
		case r := <-done:
			if r.code == 0 || !strings.Contains(r.errs, "idle for 2s") {
				t.Errorf("the session ended with exit %d, stderr %q: want it ended for being idle", r.code, r.errs)
			}
			t.Logf("ended %s after its GPU stopped (samples every 10 s, checks every 5 s)", time.Since(stopped).Round(time.Second))
		case <-time.After(35 * time.Second):
			t.Fatalf("the session still runs %s after its GPU stopped: want it ended at its idle limit", time.Since(stopped))
		}
	})
}
