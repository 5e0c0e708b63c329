package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// cdp is a minimal Chrome DevTools Protocol client: one page, commands one
// at a time.
type cdp struct {
	t  *testing.T
	c  *websocket.Conn
	id int
}

func (p *cdp) call(ctx context.Context, method string, params any) json.RawMessage {
	p.t.Helper()
	p.id++
	msg, _ := json.Marshal(map[string]any{"id": p.id, "method": method, "params": params})
	if err := p.c.Write(ctx, websocket.MessageText, msg); err != nil {
		p.t.Fatalf("cdp %s: %v", method, err)
	}
	for {
		_, data, err := p.c.Read(ctx)
		if err != nil {
			p.t.Fatalf("cdp %s: %v", method, err)
		}
		var reply struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Message string }
		}
		if json.Unmarshal(data, &reply) != nil || reply.ID != p.id {
			continue // an event
		}
		if reply.Error != nil {
			p.t.Fatalf("cdp %s: %s", method, reply.Error.Message)
		}
		return reply.Result
	}
}

// eval runs JavaScript in the page and returns its value as JSON text.
func (p *cdp) eval(ctx context.Context, expr string) string {
	p.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
	}
	_ = json.Unmarshal(p.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}), &r)
	return string(r.Result.Value)
}

func (p *cdp) waitFor(ctx context.Context, what, expr string) {
	p.t.Helper()
	eventually(p.t, 60*time.Second, what, func() bool { return p.eval(ctx, expr) == "true" })
}

// TestBrowser: headless Chromium logs in on the pool's page, starts its
// user's Jupyter server there and opens it; the screenshot of the Jupyter
// page is kept (in $DSPOOL_ARTIFACTS when set).
func TestBrowser(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs Chromium (apt-get install chromium)")
	}
	if exec.Command("/usr/bin/python3", "-c", "import nbclassic").Run() != nil {
		t.Skip("needs the classic notebook page for jupyter_server (apt-get install python3-nbclassic)")
	}
	up := startUp(t, upConfig{UIDBase: uidBase(23)})
	u, tok := up.createUser(t, "e2ebrowser23")
	cmdIn(t, up.userEnv(tok), "correct horse battery\n", "user", "passwd")

	dir := tempDir(t)
	stderr := filepath.Join(dir, "chromium.err")
	ef, err := os.Create(stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--ignore-certificate-errors", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--remote-debugging-port=0", "--window-size=1280,900", "about:blank")
	cmd.Stderr = ef
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	var devtools string
	re := regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)
	eventually(t, 30*time.Second, "Chromium's DevTools address", func() bool {
		b, _ := os.ReadFile(stderr)
		if m := re.FindSubmatch(b); m != nil {
			devtools = string(m[1])
			return true
		}
		return false
	})
	host := strings.SplitN(strings.TrimPrefix(devtools, "ws://"), "/", 2)[0]
	resp, err := http.Get("http://" + host + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	var targets []struct {
		Type string
		WS   string `json:"webSocketDebuggerUrl"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	page := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			page = tg.WS
		}
	}
	if page == "" {
		t.Fatalf("no page target in %+v", targets)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(ctx, page, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	p := &cdp{t: t, c: c}
	navigate := func(url string) {
		p.call(ctx, "Page.navigate", map[string]any{"url": url})
		p.waitFor(ctx, "the page "+url+" to load", `document.readyState === "complete" && location.href.startsWith(`+jsString(url)+`)`)
	}

	navigate(up.URL + "/")
	p.eval(ctx, fmt.Sprintf(`document.getElementById("username").value = %s; document.getElementById("password").value = "correct horse battery"; document.querySelector("form").submit(); true`, jsString(u.Name)))
	p.waitFor(ctx, "the logged-in page", `document.readyState === "complete" && !!document.getElementById("start")`)
	p.eval(ctx, `document.getElementById("start").click(); true`)
	p.waitFor(ctx, "the page to show the server ready", `document.getElementById("state").textContent === "ready" && !document.getElementById("open").hidden`)
	navigate(up.URL + "/user/" + u.Name + "/tree")
	p.waitFor(ctx, "Jupyter's file list", `!!document.querySelector("#notebook_list") && document.querySelectorAll("#notebook_list .list_item").length > 0`)

	var shot struct{ Data string }
	_ = json.Unmarshal(p.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}), &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10<<10 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	out := os.Getenv("DSPOOL_ARTIFACTS")
	if out == "" {
		out = dir
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, "jupyter-through-dspool.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the Jupyter page: %s (%d bytes)", path, len(png))
	cliOK(t, up.userEnv(tok), "notebook", "stop")
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
