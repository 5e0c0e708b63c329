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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/lazyregexp"
)

// notebookProc is a user's Jupyter server, a process of their session,
// listening on the node's loopback only.
type notebookProc struct {
	cmd   *exec.Cmd
	port  int
	base  string // its base URL, /user/NAME/
	token string
	log   *tailLog
	done  chan struct{} // closed when the process has exited
	// ctr is the server's container, in a pool with an image (cmd is
	// its podman run); the rest is nil without one.
	ctr *notebookContainer
	hc  *http.Client // to the server, on its address
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

// notebookTokenRE leaves the bounds of length (32 to 128) to
// serveNotebook, as sessionIDRE does.
var notebookTokenRE = lazyregexp.New(`^[0-9a-f]+$`)

// serveNotebook starts the session's Jupyter server (or finds it running)
// and answers once it serves requests, with its port.
func (ag *Agent) serveNotebook(w http.ResponseWriter, r *http.Request) {
	var spec api.NotebookSpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
		http.Error(w, "bad notebook request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if spec.BaseURL != "/user/"+spec.User.Name+"/" || len(spec.Token) < 32 || len(spec.Token) > 128 || !notebookTokenRE.MatchString(spec.Token) || len(spec.Command) == 0 {
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
	env = append(env, h.secretEnv(spec.Secrets)...)
	env = append(env, ag.workEnv(spec.WorkToken)...)
	// Requests come through the control plane with the Host the user asked
	// for (Jupyter checks Origin against it), a name Jupyter would refuse
	// as remote: its DNS-rebinding guard is the front door's to keep, which
	// checks Origin itself and holds the server's token. The server still
	// listens on loopback alone.
	args := append(append([]string(nil), spec.Command...),
		"--ServerApp.ip=127.0.0.1", "--ServerApp.port="+strconv.Itoa(port), "--ServerApp.port_retries=0",
		"--ServerApp.base_url="+spec.BaseURL, "--ServerApp.root_dir="+h.home, "--ServerApp.open_browser=False",
		"--ServerApp.allow_remote_access=True")
	var cmd *exec.Cmd
	var ctr *notebookContainer
	if h.ctr != nil {
		// In the session's image: a container of its own beside the
		// session's, in the session's cgroup, whose process tree ends
		// with it.
		if cmd, ctr, err = ag.notebookContainerCmd(ctx, h, env, args); err != nil {
			return nil, err
		}
	} else {
		path, err := lookPath(spec.Command[0], envValue(env, "PATH"))
		if err != nil {
			return nil, fmt.Errorf("the pool's Jupyter command: %w", err)
		}
		cmd = &exec.Cmd{Path: path, Args: args, Env: env, Dir: h.home, SysProcAttr: sysProcAttr(h.uid, h.gid, h.cg)}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		ag.removeNotebookContainer(ctr)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, outW
	if ctr != nil {
		err = spawn(cmd, nil) // podman, as root, outside the session's cgroup
	} else {
		err = spawn(cmd, h.cg)
	}
	outW.Close()
	if err != nil {
		outR.Close()
		ag.removeNotebookContainer(ctr)
		return nil, fmt.Errorf("start the Jupyter server (%s): %w", spec.Command[0], unwrapExec(err))
	}
	nb := &notebookProc{cmd: cmd, port: port, base: spec.BaseURL, token: spec.Token, log: &tailLog{}, done: make(chan struct{}), ctr: ctr}
	nb.hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return nb.dial(ctx) }}}
	pgid := cmd.Process.Pid
	h.mu.Lock()
	h.nb = nb
	h.pgids[pgid] = true
	ended := h.ended
	h.mu.Unlock()
	if ended {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	read := make(chan struct{})
	go func() { nb.log.read(outR); close(read) }()
	go func() {
		_ = cmd.Wait()
		// Its last lines may still be in the pipe: read them before saying
		// it exited, but not for long (a kernel it started may hold the
		// pipe open).
		select {
		case <-read:
		case <-time.After(time.Second):
		}
		outR.Close()
		ag.removeNotebookContainer(ctr)
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
	// Jupyter starts in about half a second here: a short tick answers
	// soon after it serves.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	url := fmt.Sprintf("http://127.0.0.1:%d%sapi/status", nb.port, spec.BaseURL)
	for {
		// In an image, the container's init is found first: its process
		// tree is the server's, and its network the one to dial.
		if err := ag.locateNotebook(ctx, nb); err == nil {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			req, _ := http.NewRequestWithContext(rctx, "GET", url, nil)
			req.Header.Set("Authorization", "token "+spec.Token)
			if resp, err := nb.hc.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					cancel()
					return nil
				}
			}
			cancel()
		}
		select {
		case <-nb.done:
			if nb.ctr != nil {
				return nb.ctr.startFailed(nb)
			}
			return fmt.Errorf("the Jupyter server exited while starting (%s); its last lines:\n%s", nb.cmd.ProcessState, nb.log)
		case <-deadline.C:
			return fmt.Errorf("the Jupyter server did not answer within %s; its last lines:\n%s", limit, nb.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stop ends the server: SIGTERM to its process group (in an image, podman
// run passes it to the container's init), SIGKILL 5 s later (in an image,
// the container is removed).
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

// dial connects to the server: on the node's loopback, or on its
// container's when the container has a network of its own.
func (nb *notebookProc) dial(ctx context.Context) (net.Conn, error) {
	addr := "127.0.0.1:" + strconv.Itoa(nb.port)
	if nb.ctr != nil {
		if ns := nb.ctr.netnsFile(); ns != nil {
			return dialInNetns(ctx, ns, addr)
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// root is the process whose tree is the server's: the server itself, or
// its container's init once found.
func (nb *notebookProc) root() int {
	if nb.ctr != nil {
		if pid := nb.ctr.initPID(); pid > 0 {
			return pid
		}
	}
	return nb.cmd.Process.Pid
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
		// Gone, not "not found": it ran, and exited (Quit, or a crash).
		http.Error(w, "no Jupyter server runs in this session", http.StatusGone)
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
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	c, err := nb.dial(ctx)
	cancel()
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

// serveNotebookActivity reports what the server has used: cpu of its
// process tree (kernels included) and its kernels' states.
func (ag *Agent) serveNotebookActivity(w http.ResponseWriter, r *http.Request) {
	nb := ag.notebookOf(w, r)
	if nb == nil {
		return
	}
	act := api.NotebookActivity{CPUSeconds: treeCPU(nb.root())}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d%sapi/kernels", nb.port, nb.base), nil)
	req.Header.Set("Authorization", "token "+nb.token)
	resp, err := nb.hc.Do(req)
	if err != nil {
		http.Error(w, "ask the Jupyter server for its kernels: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var kernels []struct {
		State string `json:"execution_state"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&kernels); err != nil {
		http.Error(w, "the Jupyter server's kernels: "+err.Error(), http.StatusBadGateway)
		return
	}
	act.Kernels = len(kernels)
	for _, k := range kernels {
		if k.State == "busy" {
			act.KernelsBusy++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(act)
}

// treeCPU is the cpu time, in seconds, that a process and all its
// descendants have used so far (from /proc; processes that already exited
// count through their parents' reaped children).
func treeCPU(root int) float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	type proc struct {
		ppid  int
		ticks int64
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command may hold spaces and parentheses: fields start after
		// the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var ticks int64
		for _, k := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
		procs[pid] = proc{ppid: ppid, ticks: ticks}
	}
	in := map[int]bool{root: true}
	for changed := true; changed; {
		changed = false
		for pid, p := range procs {
			if !in[pid] && in[p.ppid] {
				in[pid] = true
				changed = true
			}
		}
	}
	var ticks int64
	for pid := range in {
		ticks += procs[pid].ticks
	}
	return float64(ticks) / 100 // USER_HZ
}
