package e2e_test

import (
	"context"
	"encoding/json"
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
	"github.com/dspool/dspool/api"
)

// TestPythonSDK runs the Python SDK's own tests (python/tests, with
// Debian's pytest) against `dspool up` as a user of its own, with a second
// node joined over HTTPS, so that jobs run the SDK on both kinds of node;
// then, with Jupyter, a notebook kernel submits a job with the SDK and no
// setup, and its session's token stops working when the session ends.
func TestPythonSDK(t *testing.T) {
	py := pythonWithPytest(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(185)})
	usr, tok := up.createUser(t, "e2esdk185")
	applyPool(t, up, "name: ext\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 1\n")
	join := strings.TrimSpace(cliOK(t, up.env(), "pool", "join-token", "ext"))
	dir := tempDir(t)
	startAgent(t, dir, "--server", up.URL, "--join-token", join, "--pool", "ext", "--name", "e2e-sdk185",
		"--share", up.Share, "--state", filepath.Join(dir, "state"), "--cpus", "1", "--memory", "1GiB")
	up.waitNodes(t, "ext", 1)
	jupyter := os.Geteuid() == 0 && exec.Command("/usr/bin/python3", "-c", "import jupyter_server, ipykernel").Run() == nil

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "python/tests")
	cmd.Dir = root
	cmd.Env = append(baseEnv(), append(up.userEnv(tok), "PYTHONDONTWRITEBYTECODE=1", "DSPOOL_TEST_POOLS=default,ext")...)
	if jupyter {
		cmd.Env = append(cmd.Env, "DSPOOL_TEST_JUPYTER=1")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -m pytest python/tests: %v\n%s", py, err, out)
	}
	// Every test ran against the server: none skipped, but the notebook
	// where this machine has no Jupyter.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "SKIPPED") && (jupyter || !strings.Contains(line, "DSPOOL_TEST_JUPYTER")) {
			t.Errorf("a test of the SDK was skipped: %s", line)
		}
	}
	if !strings.Contains(string(out), " passed") {
		t.Fatalf("pytest passed no test:\n%s", out)
	}
	t.Logf("pytest: %s", lastLine(string(out)))

	if !jupyter {
		t.Log("the notebook kernel's part needs root and Debian's Jupyter (python3-jupyter-server, python3-ipykernel)")
		return
	}
	kernelSubmits(t, up, usr, tok)
}

// kernelSubmits: in a notebook kernel, the SDK the control plane serves is
// installed and submits a job, with nothing set up; the kernel's token,
// its session's, works while the session lasts and is in no log.
func kernelSubmits(t *testing.T, up *upProc, usr *dspool.User, tok string) {
	env := up.userEnv(tok)
	var nb dspool.Notebook
	cliJSON(t, env, &nb, "notebook", "start", "--wait")
	req, _ := http.NewRequest("POST", nb.URL+"api/kernels", strings.NewReader(`{"name":"python3"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
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
	ws := "ws" + strings.TrimPrefix(nb.URL, "http") + "api/kernels/" + kernel.ID + "/channels"
	code := `import os, subprocess, sys, tempfile
d = tempfile.mkdtemp()
cert = ["--cert", os.environ["DSPOOL_CA"]] if os.environ.get("DSPOOL_CA") else []
p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--target", d, *cert,
                    "--find-links", os.environ["DSPOOL_SERVER"] + "/sdk/", "dspool"], capture_output=True, text=True)
if p.returncode:
    print("pip failed:", p.stdout, p.stderr)
else:
    sys.path.insert(0, d)
    import dspool
    j = dspool.Client().submit(["echo", "from the kernel"], cpus=0.1, wait=True)
    print(j.id, j.state, j.user, os.environ["DSPOOL_TOKEN"])`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := strings.Fields(runInKernel(ctx, t, nil, ws, tok, usr.Name, code))
	if len(got) != 4 || got[1] != "succeeded" || got[2] != usr.Name || !strings.HasPrefix(got[3], "dspw_") {
		t.Fatalf("the kernel printed %q; want a job id, succeeded, %s and its token", got, usr.Name)
	}
	t.Logf("the kernel submitted job %s as %s", got[0], got[2])
	if logs := cliOK(t, env, "job", "logs", got[0]); logs != "from the kernel\n" {
		t.Errorf("job %s's output: %q", got[0], logs)
	}
	// The token is in no log, and not in what the API shows of the session.
	kernelTok := got[3]
	logs, _ := filepath.Glob(filepath.Join(up.Data, "agents", "*.log"))
	for _, f := range append(logs, up.stdout, up.stderr) {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), kernelTok) {
			t.Errorf("%s holds the session's token", f)
		}
	}
	if out := cliOK(t, env, "session", "list", "-o", "json"); strings.Contains(out, kernelTok) {
		t.Errorf("session list shows the session's token")
	}
	w := &api.Client{Server: up.URL, Token: kernelTok, HTTP: &http.Client{}}
	if u, err := w.WhoAmI(context.Background()); err != nil || u.Name != usr.Name {
		t.Fatalf("the kernel's token while its session lasts: %+v, %v", u, err)
	}
	cliOK(t, env, "notebook", "stop")
	eventually(t, 30*time.Second, "the session's token to be refused once the session has ended", func() bool {
		_, err := w.WhoAmI(context.Background())
		return dspool.ErrorCode(err) == dspool.EUnauthorized && strings.Contains(err.Error(), "has ended")
	})
}

// pythonWithPytest is a python3 that has pytest: Debian's, else the first
// on PATH; the test is skipped, saying what to install, when none has.
func pythonWithPytest(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import pytest").Run() == nil {
			return py
		}
	}
	t.Skip("needs pytest for the Python SDK's tests: apt-get install python3-pytest")
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return fmt.Sprint(lines[len(lines)-1])
}
