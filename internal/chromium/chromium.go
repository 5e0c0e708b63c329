// Package chromium drives a headless Chromium over the DevTools protocol,
// for the tests and benchmarks of the pool's pages: start it, load a page,
// evaluate script in it, take a screenshot. It talks to nothing but the
// Chromium it started, and kills that Chromium (its whole process group)
// on Close.
package chromium

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// Browser is a running headless Chromium with one page.
type Browser struct {
	cmd  *exec.Cmd
	conn *websocket.Conn
	// Page is the browser's page.
	Page *Page
}

// ErrNoChromium is returned by Start when no Chromium is installed.
var ErrNoChromium = errors.New("needs Chromium (apt-get install chromium)")

// Start runs Chromium with its profile and log in dir and a window of
// width × height, and connects to its page.
func Start(ctx context.Context, dir string, width, height int) (*Browser, error) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		return nil, ErrNoChromium
	}
	stderr := filepath.Join(dir, "chromium.err")
	ef, err := os.Create(stderr)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--ignore-certificate-errors", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--remote-debugging-port=0", fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	cmd.Stderr = ef
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	b := &Browser{cmd: cmd}
	if err := b.connect(ctx, stderr); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

func (b *Browser) connect(ctx context.Context, stderr string) error {
	var devtools string
	for deadline := time.Now().Add(30 * time.Second); devtools == ""; {
		out, _ := os.ReadFile(stderr)
		if m := devtoolsLine.FindSubmatch(out); m != nil {
			devtools = string(m[1])
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chromium printed no DevTools address in 30s: %s", strings.TrimSpace(string(out)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	host := strings.SplitN(strings.TrimPrefix(devtools, "ws://"), "/", 2)[0]
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+host+"/json/list", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("list chromium's pages: %w", err)
	}
	var targets []struct {
		Type string
		WS   string `json:"webSocketDebuggerUrl"`
	}
	err = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("list chromium's pages: %w", err)
	}
	page := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			page = tg.WS
		}
	}
	if page == "" {
		return fmt.Errorf("chromium has no page among %+v", targets)
	}
	c, _, err := websocket.Dial(ctx, page, nil)
	if err != nil {
		return fmt.Errorf("connect to chromium's page: %w", err)
	}
	c.SetReadLimit(64 << 20)
	b.conn, b.Page = c, &Page{c: c}
	return nil
}

// Close kills Chromium.
func (b *Browser) Close() {
	if b.conn != nil {
		b.conn.CloseNow()
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	_ = b.cmd.Wait()
}

// Page is one page of the browser; its calls go one at a time.
type Page struct {
	c  *websocket.Conn
	id int
}

// Call sends a DevTools command and returns its result (events that come
// meanwhile are dropped).
func (p *Page) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	p.id++
	msg, _ := json.Marshal(map[string]any{"id": p.id, "method": method, "params": params})
	if err := p.c.Write(ctx, websocket.MessageText, msg); err != nil {
		return nil, fmt.Errorf("cdp %s: %w", method, err)
	}
	for {
		_, data, err := p.c.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("cdp %s: %w", method, err)
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
			return nil, fmt.Errorf("cdp %s: %s", method, reply.Error.Message)
		}
		return reply.Result, nil
	}
}

// Eval runs JavaScript in the page (awaiting a promise) and returns its
// value as JSON text; a script that throws is an error.
func (p *Page) Eval(ctx context.Context, expr string) (string, error) {
	res, err := p.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	if err != nil {
		return "", err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return "", err
	}
	if r.Exception != nil {
		return "", fmt.Errorf("script failed: %s %s", r.Exception.Text, r.Exception.Exception.Description)
	}
	return string(r.Result.Value), nil
}

// Navigate loads url and waits until the page has loaded.
func (p *Page) Navigate(ctx context.Context, url string) error {
	if _, err := p.Call(ctx, "Page.navigate", map[string]any{"url": url}); err != nil {
		return err
	}
	return p.Wait(ctx, 60*time.Second, `document.readyState === "complete" && location.href.startsWith(`+JSString(url)+`)`)
}

// Wait evaluates expr until it is true, for at most timeout.
func (p *Page) Wait(ctx context.Context, timeout time.Duration, expr string) error {
	deadline := time.Now().Add(timeout)
	for {
		v, err := p.Eval(ctx, expr)
		if v == "true" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("waited %s for %s: %w", timeout, expr, err)
			}
			return fmt.Errorf("waited %s for %s: it is %s", timeout, expr, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Screenshot returns the page as a PNG.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	res, err := p.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	if err != nil {
		return nil, err
	}
	var shot struct{ Data string }
	if err := json.Unmarshal(res, &shot); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(shot.Data)
}

// SetWidth makes the page's viewport width CSS pixels wide (a phone's:
// 390), as a device of that width shows it.
func (p *Page) SetWidth(ctx context.Context, width, height int, mobile bool) error {
	_, err := p.Call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
	return err
}

// JSString quotes s for JavaScript.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
