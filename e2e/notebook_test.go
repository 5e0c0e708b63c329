package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/dspool/dspool"
)

func requireJupyter(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import jupyter_server, ipykernel").Run(); err != nil {
		t.Skip("needs Debian's Jupyter server and kernel (apt-get install python3-jupyter-server python3-ipykernel)")
	}
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
	c, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + adaTok}}})
	if err != nil {
		t.Fatalf("kernel websocket: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	msg := map[string]any{
		"header": map[string]any{"msg_id": "e2e-1", "username": ada.Name, "session": "e2e", "msg_type": "execute_request",
			"version": "5.3", "date": time.Now().UTC().Format(time.RFC3339)},
		"parent_header": map[string]any{}, "metadata": map[string]any{}, "channel": "shell", "buffers": []any{},
		"content": map[string]any{"code": "print(6*7)", "silent": false, "store_history": false,
			"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true},
	}
	out, _ := json.Marshal(msg)
	if err := c.Write(ctx, websocket.MessageText, out); err != nil {
		t.Fatal(err)
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("no output from the kernel: %v", err)
		}
		var m struct {
			Header struct {
				MsgType string `json:"msg_type"`
			} `json:"header"`
			ParentHeader struct {
				MsgID string `json:"msg_id"`
			} `json:"parent_header"`
			Content struct{ Text string } `json:"content"`
		}
		if json.Unmarshal(data, &m) == nil && m.Header.MsgType == "stream" && m.ParentHeader.MsgID == "e2e-1" {
			if m.Content.Text != "42\n" {
				t.Fatalf("the kernel printed %q, want 42", m.Content.Text)
			}
			break
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	uid := runsAs(ada)
	if len(procsWith(uid, "jupyter_server")) == 0 || len(procsWith(uid, "ipykernel_launcher")) == 0 {
		t.Fatalf("no Jupyter server or kernel of uid %d running", uid)
	}

	cliJSON(t, env, &nb, "notebook", "stop")
	if nb.State != dspool.NotebookStopped {
		t.Fatalf("after stop: %+v", nb)
	}
	if code, _ := do("GET", "api/status", adaTok, ""); code != http.StatusNotFound {
		t.Fatalf("the proxy after stop: %d", code)
	}
	eventually(t, 15*time.Second, "the server and its kernel to exit", func() bool {
		return len(procsWith(uid, "jupyter_server")) == 0 && len(procsWith(uid, "ipykernel_launcher")) == 0
	})
}

// procsWith lists the processes of uid with an argument equal to arg.
func procsWith(uid int, arg string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", e.Name()))
		if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
