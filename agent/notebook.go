package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool/api"
)

// notebookProc is a user's Jupyter server, a process of their session,
// listening on the node's loopback only.
type notebookProc struct {
	cmd  *exec.Cmd
	port int
	log  *tailLog
	done chan struct{} // closed when the process has exited
}

// tailLog keeps the last lines a process printed.
type tailLog struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 40

func (t *tailLog) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 500 {
			line = line[:500] + "..."
		}
		t.mu.Lock()
		t.lines = append(t.lines, line)
		if len(t.lines) > tailLines {
			t.lines = t.lines[len(t.lines)-tailLines:]
		}
		t.mu.Unlock()
	}
}

func (t *tailLog) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

var notebookTokenRE = regexp.MustCompile(`^[0-9a-f]{32,128}$`)

// serveNotebook starts the session's Jupyter server (or finds it running)
// and answers once it serves requests, with its port.
func (ag *Agent) serveNotebook(w http.ResponseWriter, r *http.Request) {
	var spec api.NotebookSpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
		http.Error(w, "bad notebook request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if spec.BaseURL != "/user/"+spec.User.Name+"/" || !notebookTokenRE.MatchString(spec.Token) || len(spec.Command) == 0 {
		http.Error(w, "malformed notebook request", http.StatusBadRequest)
		return
	}
	h, err := ag.hostSession(spec.SessionSetup)
	if err != nil {
		http.Error(w, "set up the session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	nb, err := ag.startNotebook(r.Context(), h, &spec)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(api.NotebookStarted{Port: nb.port})
}

func (ag *Agent) startNotebook(ctx context.Context, h *hosted, spec *api.NotebookSpec) (*notebookProc, error) {
	h.mu.Lock()
	if nb := h.nb; nb != nil {
		h.mu.Unlock()
		select {
		case <-nb.done:
		default:
			return nb, ag.waitNotebook(ctx, nb, spec)
		}
		h.mu.Lock()
	}
	h.mu.Unlock()

	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + h.home, "USER=" + spec.User.Name, "LOGNAME=" + spec.User.Name, "SHELL=/bin/bash", "LANG=C.UTF-8",
		"DSPOOL_SESSION=" + spec.Session, "DSPOOL_POOL=" + spec.Pool, "DSPOOL_NODE=" + ag.nodeName, "DSPOOL_SHARE=" + ag.cfg.Share,
		// The secret is in the environment, not on the command line (ps).
		"JUPYTER_TOKEN=" + spec.Token,
	}
	path, err := lookPath(spec.Command[0], envValue(env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("the pool's Jupyter command: %w", err)
	}
	args := append(append([]string(nil), spec.Command...),
		"--ServerApp.ip=127.0.0.1", "--ServerApp.port="+strconv.Itoa(port), "--ServerApp.port_retries=0",
		"--ServerApp.base_url="+spec.BaseURL, "--ServerApp.root_dir="+h.home, "--ServerApp.open_browser=False")
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{Path: path, Args: args, Env: env, Dir: h.home, Stdout: outW, Stderr: outW,
		SysProcAttr: sysProcAttr(h.uid, h.gid, h.cg)}
	err = spawn(cmd, h.cg)
	outW.Close()
	if err != nil {
		outR.Close()
		return nil, fmt.Errorf("start the Jupyter server (%s): %w", spec.Command[0], unwrapExec(err))
	}
	nb := &notebookProc{cmd: cmd, port: port, log: &tailLog{}, done: make(chan struct{})}
	pgid := cmd.Process.Pid
	h.mu.Lock()
	h.nb = nb
	h.pgids[pgid] = true
	ended := h.ended
	h.mu.Unlock()
	if ended {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	go nb.log.read(outR)
	go func() {
		_ = cmd.Wait()
		outR.Close()
		h.mu.Lock()
		delete(h.pgids, pgid)
		if h.nb == nb {
			h.nb = nil
		}
		h.mu.Unlock()
		close(nb.done)
		ag.log.Info("jupyter server exited", "session", spec.Session, "state", cmd.ProcessState.String())
	}()
	ag.log.Info("jupyter server started", "session", spec.Session, "user", spec.User.Name, "port", port)
	if err := ag.waitNotebook(ctx, nb, spec); err != nil {
		nb.stop()
		return nil, err
	}
	return nb, nil
}

// waitNotebook waits until the server answers its status with the token.
func (ag *Agent) waitNotebook(ctx context.Context, nb *notebookProc, spec *api.NotebookSpec) error {
	limit := time.Duration(spec.Timeout)
	if limit <= 0 {
		limit = time.Minute
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	url := fmt.Sprintf("http://127.0.0.1:%d%sapi/status", nb.port, spec.BaseURL)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "token "+spec.Token)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-nb.done:
			return fmt.Errorf("the Jupyter server exited while starting (%s); its last lines:\n%s", nb.cmd.ProcessState, nb.log)
		case <-deadline.C:
			return fmt.Errorf("the Jupyter server did not answer within %s; its last lines:\n%s", limit, nb.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stop ends the server: SIGTERM to its process group, SIGKILL 5 s later.
func (nb *notebookProc) stop() {
	pgid := nb.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-nb.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-nb.done
	}
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (ag *Agent) notebookOf(w http.ResponseWriter, r *http.Request) *notebookProc {
	var ref api.NotebookRef
	if err := json.NewDecoder(r.Body).Decode(&ref); err != nil {
		http.Error(w, "bad notebook reference: "+err.Error(), http.StatusBadRequest)
		return nil
	}
	ag.smu.Lock()
	h := ag.sessions[ref.Session]
	ag.smu.Unlock()
	if h == nil {
		http.Error(w, "no such session on this node", http.StatusNotFound)
		return nil
	}
	h.mu.Lock()
	nb := h.nb
	h.mu.Unlock()
	if nb == nil {
		http.Error(w, "no Jupyter server runs in this session", http.StatusNotFound)
		return nil
	}
	return nb
}

func (ag *Agent) serveNotebookStop(w http.ResponseWriter, r *http.Request) {
	if nb := ag.notebookOf(w, r); nb != nil {
		nb.stop()
		w.WriteHeader(http.StatusOK)
	}
}

// serveNotebookConnect connects a stream to the session's Jupyter server.
func (ag *Agent) serveNotebookConnect(w http.ResponseWriter, r *http.Request) {
	nb := ag.notebookOf(w, r)
	if nb == nil {
		return
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(nb.port), 10*time.Second)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) {
			http.Error(w, "the Jupyter server does not answer: "+err.Error(), http.StatusBadGateway)
			return
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, err := hijack(w, "")
	if err != nil {
		c.Close()
		return
	}
	splice(conn, c.(*net.TCPConn))
}
