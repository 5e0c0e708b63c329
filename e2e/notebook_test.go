package e2e_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/dspool/dspool"
)

func requireJupyter(t *testing.T) {
	t.Helper()
	if !haveJupyter() {
		t.Skip(noJupyter)
	}
}

const noJupyter = "needs Debian's Jupyter server and kernel (apt-get install python3-jupyter-server python3-ipykernel)"

// haveJupyter reports whether the Jupyter server and kernel that agents
// start are installed.
func haveJupyter() bool {
	return exec.Command("/usr/bin/python3", "-c", "import jupyter_server, ipykernel").Run() == nil
}

// TestNotebook: a user's own Jupyter server on a node, reached through the
// control plane: the REST API creates a notebook on the share, a kernel runs
// code over its websocket, and nobody else reaches it.
func TestNotebook(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	up := startUp(t, upConfig{UIDBase: uidBase(18)})
	ada, adaTok := up.createUser(t, "e2enb18a")
	_, bobTok := up.createUser(t, "e2enb18b")
	env := up.userEnv(adaTok)

	var nb dspool.Notebook
	cliJSON(t, env, &nb, "notebook", "start", "--wait")
	if nb.State != dspool.NotebookReady || nb.URL != up.URL+"/user/"+ada.Name+"/" || nb.NodeName == "" {
		t.Fatalf("notebook start --wait: %+v", nb)
	}
	base := nb.URL
	do := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		return notebookDo(t, base, method, path, token, body)
	}

	// A notebook made through the proxy is a file of ada's on the share.
	code, b := do("POST", "api/contents", adaTok, `{"type":"notebook"}`)
	var created struct{ Path string }
	if code != http.StatusCreated || json.Unmarshal(b, &created) != nil || created.Path == "" {
		t.Fatalf("create a notebook: %d %s", code, b)
	}
	st, err := os.Stat(filepath.Join(up.Share, "home", ada.Name, created.Path))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(ada.UID) {
		t.Fatalf("the notebook on the share: %v, %v; want it owned by uid %d", st, err, ada.UID)
	}

	// Nobody else gets in: another user, no credentials, a foreign origin.
	if code, b := do("GET", "api/contents", bobTok, ""); code != http.StatusNotFound {
		t.Fatalf("bob at ada's server: %d %s", code, b)
	}
	if code, _ := do("GET", "api/contents", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", code)
	}

	// A kernel runs print(6*7) over its websocket.
	code, b = do("POST", "api/kernels", adaTok, `{"name":"python3"}`)
	var kernel struct{ ID string }
	if code != http.StatusCreated || json.Unmarshal(b, &kernel) != nil || kernel.ID == "" {
		t.Fatalf("start a kernel: %d %s", code, b)
	}
	ws := "ws" + strings.TrimPrefix(base, "http") + "api/kernels/" + kernel.ID + "/channels"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if c, resp, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: http.Header{
		"Authorization": {"Bearer " + adaTok}, "Origin": {"http://evil.example"}}}); err == nil {
		c.CloseNow()
		t.Fatal("a websocket from a foreign origin was accepted")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v", err)
	}
	if got := runInKernel(ctx, t, nil, ws, adaTok, ada.Name, "print(6*7)"); got != "42\n" {
		t.Fatalf("the kernel printed %q, want 42", got)
	}
	uid := runsAs(ada)
	if len(procsWith(uid, "jupyter_server")) == 0 || len(procsWith(uid, "ipykernel_launcher")) == 0 {
		t.Fatalf("no Jupyter server or kernel of uid %d running", uid)
	}

	// Jupyter's own Quit ends the server; dspool notices.
	if code, b := do("POST", "api/shutdown", adaTok, ""); code != http.StatusOK {
		t.Fatalf("Jupyter's shutdown: %d %s", code, b)
	}
	eventually(t, 30*time.Second, "the server to be seen stopped", func() bool {
		cliJSON(t, env, &nb, "notebook", "status")
		return nb.State == dspool.NotebookStopped && strings.Contains(nb.Message, "exited")
	})
	if code, _ := do("GET", "api/status", adaTok, ""); code != http.StatusNotFound {
		t.Fatalf("the proxy after the server exited: %d", code)
	}
	eventually(t, 15*time.Second, "the server and its kernel to exit", func() bool {
		return len(procsWith(uid, "jupyter_server")) == 0 && len(procsWith(uid, "ipykernel_launcher")) == 0
	})
}

// procsWith lists the processes of uid with an argument equal to arg.
func procsWith(uid int, arg string) []int {
	return procsMatching(uid, func(args []string) bool { return slices.Contains(args, arg) })
}

// TestNotebookCulling: with a short idle period, an unused server is
// stopped with its reason, and one whose kernel is busy (no browser
// attached) is left alone.
func TestNotebookCulling(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	up := startUp(t, upConfig{UIDBase: uidBase(20)})
	adm := up.api(up.adminToken(t))
	ctx := context.Background()
	pool, err := adm.Pool(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	pool.Pool.Sessions.JupyterIdle = dspool.Duration(3 * time.Second)
	if _, err := adm.ApplyPools(ctx, []*dspool.Pool{pool.Pool}); err != nil {
		t.Fatal(err)
	}
	_, idleTok := up.createUser(t, "e2ecull20a")
	busy, busyTok := up.createUser(t, "e2ecull20b")
	var nb dspool.Notebook
	cliJSON(t, up.userEnv(idleTok), &nb, "notebook", "start", "--wait")
	cliJSON(t, up.userEnv(busyTok), &nb, "notebook", "start", "--wait")

	// The busy user's kernel computes for 40 s; the websocket goes away.
	req, _ := http.NewRequest("POST", nb.URL+"api/kernels", strings.NewReader(`{"name":"python3"}`))
	req.Header.Set("Authorization", "Bearer "+busyTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var kernel struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&kernel)
	resp.Body.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(nb.URL, "http")+"api/kernels/"+kernel.ID+"/channels",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + busyTok}}})
	if err != nil {
		t.Fatal(err)
	}
	run, _ := json.Marshal(map[string]any{
		"header":        map[string]any{"msg_id": "sleep", "username": busy.Name, "session": "e2e", "msg_type": "execute_request", "version": "5.3"},
		"parent_header": map[string]any{}, "metadata": map[string]any{}, "channel": "shell", "buffers": []any{},
		"content": map[string]any{"code": "import time\nt = time.time()\nwhile time.time() - t < 40:\n    pass", "silent": false, "store_history": false,
			"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true}})
	if err := c.Write(wctx, websocket.MessageText, run); err != nil {
		t.Fatal(err)
	}
	for { // until the kernel says it is busy with that code
		_, data, err := c.Read(wctx)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Header struct {
				MsgType string `json:"msg_type"`
			} `json:"header"`
			ParentHeader struct {
				MsgID string `json:"msg_id"`
			} `json:"parent_header"`
			Content struct {
				State string `json:"execution_state"`
			} `json:"content"`
		}
		if json.Unmarshal(data, &m) == nil && m.Header.MsgType == "status" && m.ParentHeader.MsgID == "sleep" && m.Content.State == "busy" {
			break
		}
	}
	c.Close(websocket.StatusNormalClosure, "")

	var idle dspool.Notebook
	eventually(t, 20*time.Second, "the idle server to be culled", func() bool {
		cliJSON(t, up.userEnv(idleTok), &idle, "notebook", "status")
		return idle.State != dspool.NotebookReady
	})
	if idle.State != dspool.NotebookStopped || !strings.Contains(idle.Message, "unused") {
		t.Fatalf("the idle server: %+v", idle)
	}
	eventually(t, 10*time.Second, "the culled server's session to end with the reason", func() bool {
		var sessions []*dspool.Session
		cliJSON(t, up.userEnv(idleTok), &sessions, "session", "list", "--ended")
		return len(sessions) == 1 && sessions[0].State == dspool.SessionEnded && strings.Contains(sessions[0].EndReason, "unused")
	})
	// For twice its idle period, the busy kernel's server keeps running.
	for began := time.Now(); time.Since(began) < 6*time.Second; {
		cliJSON(t, up.userEnv(busyTok), &nb, "notebook", "status")
		if nb.State != dspool.NotebookReady || nb.StopsAt == nil {
			t.Fatalf("the server with a busy kernel, %v after the idle one was culled: %+v", time.Since(began), nb)
		}
	}
	cliJSON(t, up.userEnv(busyTok), &nb, "notebook", "stop")
}

// TestNotebookStartFailure: a server that cannot start fails with its last
// log lines, and its session's reservation is given back.
func TestNotebookStartFailure(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(21)})
	adm := up.api(up.adminToken(t))
	ctx := context.Background()
	pool, err := adm.Pool(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	// dspool appends its --ServerApp options, which sh takes as $0 and on.
	pool.Pool.Sessions.Jupyter = []string{"/bin/sh", "-c", "echo starting up; echo 'ImportError: no module named jupyter_server' >&2; exit 3"}
	if _, err := adm.ApplyPools(ctx, []*dspool.Pool{pool.Pool}); err != nil {
		t.Fatal(err)
	}
	_, tok := up.createUser(t, "e2enbfail21")
	_, stderr, code := cli(t, up.userEnv(tok), "notebook", "start", "--wait")
	if code == 0 || !strings.Contains(stderr, "exited while starting") || !strings.Contains(stderr, "ImportError: no module named jupyter_server") {
		t.Fatalf("notebook start --wait: exit %d, stderr %q; want the failure with the server's last lines", code, stderr)
	}
	var nb dspool.Notebook
	cliJSON(t, up.userEnv(tok), &nb, "notebook", "status")
	if nb.State != dspool.NotebookFailed || !strings.Contains(nb.Message, "starting up") {
		t.Fatalf("status after the failure: %+v", nb)
	}
	eventually(t, 10*time.Second, "the session to end", func() bool {
		var ss []*dspool.Session
		cliJSON(t, up.userEnv(tok), &ss, "session", "list")
		return len(ss) == 0
	})
}

// TestProxyOneRequestInOneOut: requests that try to smuggle a second one
// past the proxy (Content-Length beside chunked encoding, bytes after the
// body) reach the user's server as at most the one request the proxy
// authenticated; pipelined requests each arrive once.
func TestProxyOneRequestInOneOut(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(24)})
	fake := filepath.Join(tempDir(t), "fake_jupyter.py")
	src, err := os.ReadFile("testdata/fake_jupyter.py")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, src, 0o644); err != nil {
		t.Fatal(err)
	}
	adm := up.api(up.adminToken(t))
	ctx := context.Background()
	pool, err := adm.Pool(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	pool.Pool.Sessions.Jupyter = []string{"/usr/bin/python3", fake}
	if _, err := adm.ApplyPools(ctx, []*dspool.Pool{pool.Pool}); err != nil {
		t.Fatal(err)
	}
	u, tok := up.createUser(t, "e2esmuggle24")
	var nb dspool.Notebook
	cliJSON(t, up.userEnv(tok), &nb, "notebook", "start", "--wait")
	log := filepath.Join(up.Share, "home", u.Name, "requests.log")
	addr := strings.TrimPrefix(up.URL, "https://")
	base := "/user/" + u.Name + "/"
	send := func(raw string) string {
		t.Helper()
		c, err := tls.Dial("tcp", addr, testCAs.config())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		// The last request says Connection: close; the server ends the
		// connection after answering it.
		b, _ := io.ReadAll(c)
		return string(b)
	}
	auth := "Host: " + addr + "\r\nAuthorization: Bearer " + tok + "\r\n"
	lines := func() []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(strings.ReplaceAll(string(b), "\n", " | "))
	}

	// Pipelined: two requests in, two out, in order.
	send("GET " + base + "api/one HTTP/1.1\r\n" + auth + "\r\n" + "GET " + base + "api/two HTTP/1.1\r\n" + auth + "Connection: close\r\n\r\n")
	eventually(t, 10*time.Second, "both pipelined requests to arrive", func() bool {
		return strings.Join(lines(), " ") == "GET "+base+"api/one 0 | GET "+base+"api/two 0 |"
	})
	_ = os.Remove(log)

	// Content-Length beside chunked: a smuggled request in the body.
	smuggled := "GET " + base + "api/smuggled HTTP/1.1\r\n" + auth + "\r\n"
	send("POST " + base + "api/carrier HTTP/1.1\r\n" + auth + fmt.Sprintf("Content-Length: %d\r\n", 5+len(smuggled)) +
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n" + smuggled)
	// Bytes after a Content-Length body, without credentials.
	send("POST " + base + "api/carrier2 HTTP/1.1\r\n" + auth + "Content-Length: 5\r\n\r\nhello" +
		"GET " + base + "api/smuggled2 HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")
	// A marker request last: once it is in, everything before it is too.
	send("GET " + base + "api/marker HTTP/1.1\r\n" + auth + "Connection: close\r\n\r\n")
	eventually(t, 10*time.Second, "the marker request", func() bool { return strings.Contains(strings.Join(lines(), " "), "api/marker") })
	// Each carrier arrives once with the body its framing gave it (chunked
	// wins over Content-Length); what followed never reached the server:
	// on a connection the client asked to close, or without credentials.
	got := strings.Join(lines(), " ")
	want := "POST " + base + "api/carrier 0 | POST " + base + "api/carrier2 5 | GET " + base + "api/marker 0 |"
	if got != want {
		t.Fatalf("the server received %q, want %q", got, want)
	}
	cliOK(t, up.userEnv(tok), "notebook", "stop")
}

// runInKernel runs code in the kernel whose channels are at the websocket
// ws, with client's transport (nil: the default), and returns what it
// printed.
func runInKernel(ctx context.Context, t *testing.T, client *http.Client, ws, token, user, code string) string {
	t.Helper()
	out, err := execInKernel(ctx, client, ws, token, user, code)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// execInKernel is runInKernel for callers that expect failures (a kernel
// not reachable yet): it returns the first output, or why there was none.
func execInKernel(ctx context.Context, client *http.Client, ws, token, user, code string) (string, error) {
	c, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: client, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		return "", fmt.Errorf("kernel websocket: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	id := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	msg := map[string]any{
		"header": map[string]any{"msg_id": id, "username": user, "session": "e2e", "msg_type": "execute_request",
			"version": "5.3", "date": time.Now().UTC().Format(time.RFC3339)},
		"parent_header": map[string]any{}, "metadata": map[string]any{}, "channel": "shell", "buffers": []any{},
		"content": map[string]any{"code": code, "silent": false, "store_history": false,
			"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true},
	}
	out, _ := json.Marshal(msg)
	if err := c.Write(ctx, websocket.MessageText, out); err != nil {
		return "", fmt.Errorf("kernel websocket: send the code: %w", err)
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return "", fmt.Errorf("no output from the kernel: %w", err)
		}
		var m struct {
			Header struct {
				MsgType string `json:"msg_type"`
			} `json:"header"`
			ParentHeader struct {
				MsgID string `json:"msg_id"`
			} `json:"parent_header"`
			Content struct{ Text, Ename, Evalue string } `json:"content"`
		}
		if json.Unmarshal(data, &m) != nil || m.ParentHeader.MsgID != id {
			continue
		}
		switch m.Header.MsgType {
		case "stream":
			c.Close(websocket.StatusNormalClosure, "")
			return m.Content.Text, nil
		case "error":
			return "", fmt.Errorf("the kernel raised %s: %s", m.Content.Ename, m.Content.Evalue)
		}
	}
}
