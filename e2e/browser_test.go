package e2e_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dspool/dspool/internal/chromium"
)

// cdp is a page of a headless Chromium (internal/chromium) whose calls
// fail the test.
type cdp struct {
	t *testing.T
	p *chromium.Page
}

func (p *cdp) call(ctx context.Context, method string, params any) json.RawMessage {
	p.t.Helper()
	res, err := p.p.Call(ctx, method, params)
	if err != nil {
		p.t.Fatal(err)
	}
	return res
}

// eval runs JavaScript in the page and returns its value as JSON text.
func (p *cdp) eval(ctx context.Context, expr string) string {
	p.t.Helper()
	v, _ := p.p.Eval(ctx, expr)
	return v
}

func (p *cdp) waitFor(ctx context.Context, what, expr string) {
	p.t.Helper()
	eventually(p.t, 60*time.Second, what, func() bool { return p.eval(ctx, expr) == "true" })
}

func (p *cdp) navigate(ctx context.Context, url string) {
	p.t.Helper()
	p.call(ctx, "Page.navigate", map[string]any{"url": url})
	p.waitFor(ctx, "the page "+url+" to load", `document.readyState === "complete" && location.href.startsWith(`+jsString(url)+`)`)
}

// screenshot saves the page as name (a PNG) in $DSPOOL_ARTIFACTS, or in
// dir when that is not set, and returns its path.
func (p *cdp) screenshot(ctx context.Context, dir, name string) string {
	p.t.Helper()
	png, err := p.p.Screenshot(ctx)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10<<10 {
		p.t.Fatalf("screenshot %s: %d bytes, %v", name, len(png), err)
	}
	out := cmp.Or(os.Getenv("DSPOOL_ARTIFACTS"), dir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(out, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

// startChromium runs a headless Chromium, killed when the test ends, and
// returns its page; the test is skipped without Chromium.
func startChromium(t *testing.T, ctx context.Context, dir string) *cdp {
	t.Helper()
	b, err := chromium.Start(ctx, dir, 1280, 900)
	if errors.Is(err, chromium.ErrNoChromium) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &cdp{t: t, p: b.Page}
}

// TestBrowser: headless Chromium logs in on the pool's page, starts its
// user's Jupyter server there and opens it; the screenshot of the Jupyter
// page is kept (in $DSPOOL_ARTIFACTS when set).
func TestBrowser(t *testing.T) {
	requireRoot(t)
	requireJupyter(t)
	if exec.Command("/usr/bin/python3", "-c", "import nbclassic").Run() != nil {
		t.Skip("needs the classic notebook page for jupyter_server (apt-get install python3-nbclassic)")
	}
	up := startUp(t, upConfig{UIDBase: uidBase(23)})
	u, tok := up.createUser(t, "e2ebrowser23")
	cmdIn(t, up.userEnv(tok), "correct horse battery\n", "user", "passwd")

	dir := tempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startChromium(t, ctx, dir)
	navigate := func(url string) { p.navigate(ctx, url) }

	navigate(up.URL + "/")
	p.eval(ctx, fmt.Sprintf(`document.getElementById("username").value = %s; document.getElementById("password").value = "correct horse battery"; document.querySelector("form").submit(); true`, jsString(u.Name)))
	p.waitFor(ctx, "the logged-in page", `document.readyState === "complete" && !!document.getElementById("start")`)
	p.eval(ctx, `document.getElementById("start").click(); true`)
	p.waitFor(ctx, "the page to show the server ready", `document.getElementById("state").textContent === "ready" && !document.getElementById("open").hidden`)
	navigate(up.URL + "/user/" + u.Name + "/tree")
	p.waitFor(ctx, "Jupyter's file list", `!!document.querySelector("#notebook_list") && document.querySelectorAll("#notebook_list .list_item").length > 0`)

	p.screenshot(ctx, dir, "jupyter-through-dspool.png")
	cliOK(t, up.userEnv(tok), "notebook", "stop")
}

var jsString = chromium.JSString
