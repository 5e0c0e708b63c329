// Package e2e_test runs dspool end to end: the real binary, built once, as
// `dspool up`, `dspool server` and `dspool agent` processes, driven through
// the CLI, the API client and raw HTTP, the way users and operators drive it.
//
// It must never reach into dspool's packages' internals, share state between
// tests, or wait with a sleep: it polls with a deadline.
package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// bin is the dspool binary built by TestMain.
var bin string

// xdgHome keeps every command away from the real user's configuration.
var xdgHome string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dspool-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		fmt.Fprintf(os.Stderr, "e2e: find the module root with `go env GOMOD`: %v\n", err)
		return 1
	}
	root := filepath.Dir(string(bytes.TrimSpace(out)))
	bin = filepath.Join(dir, "dspool")
	// With the test hooks that only tests use (cli/testhooks.go).
	build := exec.Command("go", "build", "-tags", "dspool_testhooks", "-o", bin, "./cmd/dspool")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build dspool: %v\n%s", err, out)
		return 1
	}
	xdgHome = filepath.Join(dir, "xdg")
	// The tests' own HTTP requests trust the CAs of the control planes they
	// start, and nothing else.
	http.DefaultTransport.(*http.Transport).TLSClientConfig = testCAs.config()
	return m.Run()
}

// testCAs are the CAs of the control planes the tests started (each makes
// its own at first start).
var testCAs = &caSet{pool: x509.NewCertPool()}

type caSet struct {
	mu   sync.Mutex
	pool *x509.CertPool
}

// trust adds the CA in the PEM file path.
func (c *caSet) trust(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the control plane's CA: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", path)
	}
}

// config verifies a server's chain and name against the CAs, which change
// as tests start control planes.
func (c *caSet) config() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		c.mu.Lock()
		roots := c.pool.Clone()
		c.mu.Unlock()
		inter := x509.NewCertPool()
		for _, cert := range cs.PeerCertificates[1:] {
			inter.AddCert(cert)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: roots, Intermediates: inter})
		return err
	}}
}

// requireRoot skips tests whose point is running jobs as their users, in
// cgroups, which only an agent running as root does.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: agents run jobs as their dspool users (setuid, useradd) and in cgroups only as root")
	}
}

// runsAs is the uid u's jobs run as: theirs when agents run as root, else
// the agents' own.
func runsAs(u *dspool.User) int {
	if os.Geteuid() == 0 {
		return u.UID
	}
	return os.Geteuid()
}

// uidBase gives each test its own range of uids, so the OS accounts that
// agents create for different tests' users never claim the same uid.
func uidBase(test int) int { return 30000 + 100*test }

// tempDir is a t.TempDir that users other than root can traverse: jobs run
// as their users and must reach the share inside it.
func tempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// baseEnv is the environment of every process the tests start: this
// process's, without any dspool login or setting that could leak in.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DSPOOL_") || strings.HasPrefix(k, "XDG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "XDG_CONFIG_HOME="+xdgHome+"/config", "XDG_DATA_HOME="+xdgHome+"/data", "XDG_STATE_HOME="+xdgHome+"/state")
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// poll calls cond every tick until it holds or timeout passes, and reports
// whether it held.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// cli runs the dspool binary with env added to baseEnv and returns what it
// printed and its exit code.
func cli(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliWithInput(t, env, "", args...)
}

// cmdIn runs the CLI with stdin and fails the test unless it exits 0.
func cmdIn(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	out, errs, code := cliWithInput(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("dspool %s: exit code %d, want 0\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func cliWithInput(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		code = ee.ExitCode()
	default:
		t.Fatalf("dspool %s: %v\nstderr: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String(), code
}

// cliOK runs the CLI and fails the test unless it exits 0.
func cliOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, env, args...)
	if code != 0 {
		t.Fatalf("dspool %s: exit code %d, want 0\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// cliJSON runs the CLI with -o json, requires exit 0 and decodes its output
// into v.
func cliJSON(t *testing.T, env []string, v any, args ...string) {
	t.Helper()
	out := cliOK(t, env, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("dspool %s -o json: %v\noutput: %s", strings.Join(args, " "), err, out)
	}
}

// upConfig is how startUp runs `dspool up`. The zero value runs one node on
// a new data directory.
type upConfig struct {
	Nodes   int      // local agents of the pool "default" (--nodes); 0 means 1
	Ready   int      // ready nodes of every pool to wait for; 0 means Nodes
	UIDBase int      // --uid-base; 0 means the default
	Data    string   // data directory; "" means a new one
	Login   string   // CLI login file (DSPOOL_CONFIG); "" means a new one
	Args    []string // more flags of `dspool up`
	Env     []string // more of its environment
}

// upProc is a running `dspool up`.
type upProc struct {
	URL     string
	CA      string // the control plane's CA (PEM), which its URL's certificate chains to
	SSHPort string // the SSH gateway's port on 127.0.0.1
	Data    string
	Share   string
	Login   string

	t        *testing.T
	cmd      *exec.Cmd
	done     chan struct{}
	stdout   string
	stderr   string
	stop     sync.Once
	accounts []string // OS accounts to remove once it has stopped
	ready    int      // nodes waitUp waits for
	noSSH    bool     // started without the SSH gateway
}

// startUp runs `dspool up` with short timings, waits until it is up and
// its nodes are ready, and stops it when the test ends.
func startUp(t *testing.T, c upConfig) *upProc {
	t.Helper()
	u := launchUp(t, c)
	u.waitUp(t)
	return u
}

// launchUp runs `dspool up` as startUp does, without waiting for it.
func launchUp(t *testing.T, c upConfig) *upProc {
	t.Helper()
	if c.Nodes == 0 {
		c.Nodes = 1
	}
	if c.Ready == 0 {
		c.Ready = c.Nodes
	}
	dir := tempDir(t)
	if c.Data == "" {
		c.Data = filepath.Join(dir, "data")
	}
	if c.Login == "" {
		c.Login = filepath.Join(dir, "login.json")
	}
	u := &upProc{Data: c.Data, Share: c.Data + "-share", Login: c.Login, t: t, done: make(chan struct{}),
		stdout: filepath.Join(dir, "up.out"), stderr: filepath.Join(dir, "up.err"), ready: c.Ready, noSSH: slices.Contains(c.Args, "off")}
	args := []string{"up", "--data", c.Data, "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0", "--nodes", strconv.Itoa(c.Nodes),
		"--node-grace", "3s", "--kill-grace", "1s", "--heartbeat", "200ms"}
	if c.UIDBase != 0 {
		args = append(args, "--uid-base", strconv.Itoa(c.UIDBase))
	}
	args = append(args, c.Args...)
	// The first admin's OS account, which an agent makes for the admin's
	// first job, goes with the pool, as the users' accounts do.
	if _, err := user.Lookup("admin"); err != nil && !slices.Contains(c.Args, "--admin") && os.Geteuid() == 0 {
		u.accounts = append(u.accounts, "admin")
	}
	u.cmd = startProc(t, append([]string{"DSPOOL_CONFIG=" + c.Login}, c.Env...), u.stdout, u.stderr, args...)
	go func() { _ = u.cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			u.dumpLogs()
		}
		u.Stop()
		for _, name := range u.accounts {
			removeAccount(t, name)
		}
		states, _ := filepath.Glob(filepath.Join(u.Data, "agents", "*"))
		removeNodeCgroups(states...)
	})
	return u
}

// waitUp waits until `dspool up` is up and its nodes are ready.
func (u *upProc) waitUp(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "`dspool up` to print its address", func() bool {
		select {
		case <-u.done:
			t.Fatalf("dspool up exited early: %v", u.cmd.ProcessState)
		default:
		}
		b, _ := os.ReadFile(u.stdout)
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "dspool is up at "); ok {
				u.URL = strings.TrimSpace(rest)
			}
			if _, rest, ok := strings.Cut(line, "then ssh -p "); ok {
				u.SSHPort, _, _ = strings.Cut(rest, " ")
				return u.URL != ""
			}
		}
		// Without the SSH gateway, no line tells its port.
		return u.URL != "" && u.noSSH && strings.Contains(string(b), "Press Ctrl-C")
	})
	if strings.HasPrefix(u.URL, "https://") {
		u.CA = filepath.Join(u.Data, "tls", "ca.crt")
		testCAs.trust(t, u.CA)
	}
	u.waitNodes(t, "", u.ready)
}

// startProc starts the binary with stdout and stderr going to files, in its
// own process group, which the test kills whole if it will not stop.
func startProc(t *testing.T, env []string, stdout, stderr string, args ...string) *exec.Cmd {
	t.Helper()
	outf, err := os.Create(stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	errf, err := os.Create(stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout, cmd.Stderr = outf, errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dspool %s: %v", strings.Join(args, " "), err)
	}
	return cmd
}

// Stop stops `dspool up` as Ctrl-C does and waits for it; it kills it if
// it does not exit in time.
func (u *upProc) Stop() {
	u.stop.Do(func() {
		_ = u.cmd.Process.Signal(os.Interrupt)
		select {
		case <-u.done:
		case <-time.After(45 * time.Second):
			u.t.Errorf("dspool up did not exit within 45s of SIGINT; killing it")
			_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
			<-u.done
		}
	})
}

func (u *upProc) dumpLogs() {
	for _, f := range []string{u.stdout, u.stderr} {
		u.t.Logf("%s:\n%s", f, tail(f, 4000))
	}
	logs, _ := filepath.Glob(filepath.Join(u.Data, "agents", "*.log"))
	for _, f := range logs {
		u.t.Logf("%s:\n%s", f, tail(f, 2000))
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// env is the environment of the admin's CLI, logged in by `dspool up`.
// api is an API client of the control plane with token.
func (u *upProc) api(token string) *api.Client {
	return &api.Client{Server: u.URL, Token: token, HTTP: &http.Client{}}
}

func (u *upProc) env() []string { return []string{"DSPOOL_CONFIG=" + u.Login} }

// userEnv is the environment of another user's CLI: the server and a token,
// and no saved login.
func (u *upProc) userEnv(token string) []string {
	return []string{"DSPOOL_SERVER=" + u.URL, "DSPOOL_TOKEN=" + token, "DSPOOL_CA=" + u.CA,
		"DSPOOL_CONFIG=" + filepath.Join(filepath.Dir(u.Login), "no-login.json")}
}

// adminToken is the admin's token from the login file `dspool up` wrote.
func (u *upProc) adminToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(u.Login)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Server string `json:"server"`
		Token  string `json:"token"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("login file %s: %v", u.Login, err)
	}
	if c.Server != u.URL || c.Token == "" {
		t.Fatalf("login file %s: server %q, token set %v; want server %q and a token", u.Login, c.Server, c.Token != "", u.URL)
	}
	return c.Token
}

// waitNodes waits until pool (every pool when "") has want ready nodes
// connected now.
func (u *upProc) waitNodes(t *testing.T, pool string, want int) []*dspool.Node {
	t.Helper()
	var ready []*dspool.Node
	args := []string{"node", "list", "-o", "json"}
	if pool != "" {
		args = append(args, "--pool", pool)
	}
	eventually(t, 30*time.Second, fmt.Sprintf("%d ready nodes in pool %q", want, pool), func() bool {
		out, _, code := cli(t, u.env(), args...)
		var nodes []*dspool.Node
		if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil {
			return false
		}
		ready = connectedReady(nodes)
		return len(ready) == want
	})
	return ready
}

// connectedReady returns the nodes that are ready and connected now. A
// restarted server lists the nodes its store knows as they were until they
// reconnect or their grace ends, so ready alone is not enough.
func connectedReady(nodes []*dspool.Node) []*dspool.Node {
	var out []*dspool.Node
	for _, n := range nodes {
		if n.State == dspool.NodeReady && n.LastSeen != nil && time.Since(*n.LastSeen) < 2*time.Second {
			out = append(out, n)
		}
	}
	return out
}

// createUser creates a dspool user as the admin and returns it with a
// token of its own. The OS account an agent creates for it is removed once
// `dspool up` has stopped, unless it existed before.
func (u *upProc) createUser(t *testing.T, name string) (*dspool.User, string) {
	t.Helper()
	if _, err := user.Lookup(name); err != nil {
		u.accounts = append(u.accounts, name)
	}
	var usr dspool.User
	cliJSON(t, u.env(), &usr, "user", "create", name)
	if usr.Name != name || usr.UID == 0 {
		t.Fatalf("user create %s: got %+v", name, usr)
	}
	token := strings.TrimSpace(cliOK(t, u.env(), "token", "create", "--user", name))
	if !strings.HasPrefix(token, "dsp_") {
		t.Fatalf("token create --user %s printed %q, want a token starting dsp_", name, token)
	}
	return &usr, token
}

// removeAccountAfter deletes the OS account and group called name when the
// test ends, unless it existed before: agents create one for every dspool
// user that runs a job. Call it before starting what runs jobs, so that it
// runs after they have stopped.
func removeAccountAfter(t *testing.T, name string) {
	if _, err := user.Lookup(name); err == nil {
		return
	}
	t.Cleanup(func() { removeAccount(t, name) })
}

func removeAccount(t *testing.T, name string) {
	if _, err := user.Lookup(name); err != nil {
		return
	}
	if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
		t.Logf("userdel %s: %v: %s", name, err, out)
	}
	_ = exec.Command("groupdel", name).Run()
}

// job returns a job as `dspool job show -o json` prints it.
func job(t *testing.T, env []string, id int64) *api.JobDetail {
	t.Helper()
	var j api.JobDetail
	cliJSON(t, env, &j, "job", "show", strconv.FormatInt(id, 10))
	return &j
}

// submit submits a job without waiting and returns its id.
func submit(t *testing.T, env []string, args ...string) int64 {
	t.Helper()
	var j dspool.Job
	out := cliOK(t, env, append([]string{"job", "submit", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID == 0 {
		t.Fatalf("job submit %s: %v\noutput: %s", strings.Join(args, " "), err, out)
	}
	return j.ID
}

// waitState polls a job until it is in state want.
func waitState(t *testing.T, env []string, id int64, want dspool.JobState, timeout time.Duration) *api.JobDetail {
	t.Helper()
	var j *api.JobDetail
	eventually(t, timeout, fmt.Sprintf("job %d to be %s", id, want), func() bool {
		j = job(t, env, id)
		return j.State == want
	})
	return j
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

func exitCode(j *dspool.Job) string {
	if j.ExitCode == nil {
		return "null"
	}
	return strconv.Itoa(*j.ExitCode)
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, pattern, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), pattern)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// removeNodeCgroups removes the (empty) cgroups that the agents with these
// state directories made for their nodes: agents leave them behind.
func removeNodeCgroups(stateDirs ...string) {
	for _, dir := range stateDirs {
		b, err := os.ReadFile(filepath.Join(dir, "node.json"))
		if err != nil {
			continue
		}
		var id struct {
			Node string `json:"node"`
		}
		if json.Unmarshal(b, &id) != nil || id.Node == "" || strings.ContainsAny(id.Node, "/.") {
			continue
		}
		for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids"} {
			node := filepath.Join(root, "dspool", id.Node)
			// The cgroups of attempts and sessions an agent killed with
			// SIGKILL left behind (empty: their processes died with it).
			children, _ := os.ReadDir(node)
			for _, c := range children {
				if c.IsDir() {
					_ = os.Remove(filepath.Join(node, c.Name()))
				}
			}
			_ = os.Remove(node)
		}
	}
}
