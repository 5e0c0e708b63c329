package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestNotebookInImage: the Jupyter server of a pool with an image runs in
// that image (one the test builds from this machine's own python3, Jupyter
// server and kernel), as its user, with the share; a kernel it starts is
// in the image too, with the node's network or, where the pool says none,
// loopback alone. Stopping the server removes its container, and an image
// without the pool's Jupyter command is refused with a message that says
// so.
func TestNotebookInImage(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("needs podman and runc (apt-get install podman runc): the agent runs sessions in images with them")
	}
	bb := staticBusybox(t)
	jimg := importJupyterImage(t, bb)
	bimg := importBusyboxImage(t, bb)

	up := startUp(t, upConfig{UIDBase: uidBase(260)})
	pools := filepath.Join(t.TempDir(), "pools.yaml")
	err := os.WriteFile(pools, []byte("pools:\n"+
		"- {name: jhost, node: {cpus: 1, memory: 2GiB}, count: 1, image: "+jimg+"}\n"+
		"- {name: jnone, node: {cpus: 1, memory: 2GiB}, count: 1, image: "+jimg+", image_network: none}\n"+
		"- {name: jbusy, node: {cpus: 1, memory: 1GiB}, count: 1, image: "+bimg+"}\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cliOK(t, up.env(), "pool", "apply", "-f", pools)
	for _, p := range []string{"jhost", "jnone", "jbusy"} {
		up.waitNodes(t, p, 1)
	}
	ada, adaTok := up.createUser(t, "e2enbimg260")
	env := up.userEnv(adaTok)
	home := filepath.Join(up.Share, "home", ada.Name)
	uid := runsAs(ada)

	// The same start on the node, for the cost of the image.
	start := time.Now()
	var plain dspool.Notebook
	cliJSON(t, env, &plain, "notebook", "start", "--wait", "--timeout", "3m")
	t.Logf("a Jupyter server on the node: start --wait took %s", time.Since(start).Round(time.Millisecond))
	cliOK(t, env, "notebook", "stop")

	for _, pool := range []string{"jhost", "jnone"} {
		t.Run(pool, func(t *testing.T) {
			var nb dspool.Notebook
			start := time.Now()
			cliJSON(t, env, &nb, "notebook", "start", "--wait", "--pool", pool, "--timeout", "3m")
			if nb.State != dspool.NotebookReady {
				t.Fatalf("notebook start --wait --pool %s: %+v", pool, nb)
			}
			t.Logf("a Jupyter server in the image (pool %s): start --wait took %s", pool, time.Since(start).Round(time.Millisecond))
			if names := jupyterContainers(t); len(names) != 1 {
				t.Fatalf("containers of Jupyter servers while one runs: %q, want one", names)
			}
			// A kernel of the server runs in the image, as ada, with her
			// home on the share, and the pool's network.
			code, b := notebookDo(t, nb.URL, "POST", "api/kernels", adaTok, `{"name":"python3"}`)
			var kernel struct{ ID string }
			if code != http.StatusCreated || json.Unmarshal(b, &kernel) != nil || kernel.ID == "" {
				t.Fatalf("start a kernel: %d %s", code, b)
			}
			ws := "ws" + strings.TrimPrefix(nb.URL, "http") + "api/kernels/" + kernel.ID + "/channels"
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			got := runInKernel(ctx, t, nil, ws, adaTok, ada.Name, strings.Join([]string{
				"import os",
				"open(os.path.expanduser('~/from-" + pool + ".txt'), 'w').write('kernel')",
				"print(open('/etc/dspool-e2e-marker').read().strip(), os.getuid(), os.getcwd(), 'lo-only' if os.listdir('/sys/class/net') == ['lo'] else 'net')",
			}, "\n"))
			net := map[string]string{"jhost": "net", "jnone": "lo-only"}[pool]
			want := fmt.Sprintf("jupyter image %d %s %s\n", ada.UID, home, net)
			if got != want {
				t.Errorf("the kernel in pool %s printed %q, want %q (the image's file, ada's uid and home, loopback alone with no network)", pool, got, want)
			}
			st, err := os.Stat(filepath.Join(home, "from-"+pool+".txt"))
			if err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(ada.UID) {
				t.Errorf("the file the kernel wrote on the share: %v, %v; want it owned by uid %d", st, err, ada.UID)
			}

			cliOK(t, env, "notebook", "stop")
			eventually(t, 30*time.Second, "the server's container to go", func() bool { return len(jupyterContainers(t)) == 0 })
			eventually(t, 15*time.Second, "the server and its kernel to exit", func() bool {
				return len(procsWith(uid, "jupyter_server")) == 0 && len(procsWith(uid, "ipykernel_launcher")) == 0
			})
		})
	}

	// An image without the Jupyter command: the start fails, saying why.
	out, errs, code := cli(t, env, "notebook", "start", "--wait", "--pool", "jbusy", "--timeout", "2m")
	if code == 0 || !strings.Contains(errs, "image "+bimg+": it has no program /usr/bin/python3") {
		t.Errorf("notebook start in an image without python3: exit %d, stdout %q, stderr %q; want a refusal naming the image and the program", code, out, errs)
	}
	eventually(t, 30*time.Second, "the failed server's container to go", func() bool { return len(jupyterContainers(t)) == 0 })
}

// jupyterContainers lists the containers of Jupyter servers on this host.
func jupyterContainers(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, n := range strings.Fields(podmanTest(t, "ps", "--all", "--format", "{{.Names}}")) {
		if strings.HasPrefix(n, "dspool-") && strings.HasSuffix(n, "-jupyter") {
			names = append(names, n)
		}
	}
	return names
}

// notebookDo sends a request to a Jupyter server through the control
// plane, as the holder of token ("": with no credentials).
func notebookDo(t *testing.T, base, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// importJupyterImage builds a root file system of this machine's python3
// with its standard library and Debian's Python packages (Jupyter server,
// kernel and what they import), the shared libraries all of them link,
// busybox for sh, and a file of its own; imports it into the node's podman
// store under a name of this run, and removes it when the test ends.
func importJupyterImage(t *testing.T, busybox string) string {
	t.Helper()
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Fatal(err)
	}
	var stdlib bytes.Buffer
	probe := exec.Command(python, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
	probe.Stdout = &stdlib
	if err := probe.Run(); err != nil {
		t.Fatal(err)
	}
	trees := []string{strings.TrimSpace(stdlib.String()), "/usr/lib/python3/dist-packages", "/usr/share/jupyter"}
	files := map[string]bool{python: true, "/usr/bin/python3": true}
	objects := []string{python}
	for _, tree := range trees {
		_ = filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".so") {
				objects = append(objects, p)
			}
			return nil
		})
	}
	lib := regexp.MustCompile(`(/[^ ]+\.so[^ ]*) \(0x`)
	for _, o := range objects {
		out, _ := exec.Command("ldd", o).Output() // not dynamic: nothing to add
		for _, m := range lib.FindAllStringSubmatch(string(out), -1) {
			files[m[1]] = true
		}
	}
	root := busyboxRoot(t, busybox, "jupyter image", "sh")
	// Paths relative to /, links followed: /lib may be a link to usr/lib
	// here, and a library's name a link to its file.
	args := []string{"--dereference", "--exclude", strings.TrimPrefix(trees[0], "/") + "/test", "-C", "/"}
	for _, p := range trees {
		args = append(args, strings.TrimPrefix(p, "/"))
	}
	var names []string
	for p := range files {
		names = append(names, strings.TrimPrefix(p, "/"))
	}
	sort.Strings(names)
	args = append(append(args, names...), "-C", root, ".")
	return podmanImport(t, "jupyter", args...)
}
