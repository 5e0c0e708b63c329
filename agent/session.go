package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/lazyregexp"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/tlsca"
)

// hosted is an interactive session on this node: the processes of every
// SSH channel of one user's session, in one cgroup sized by the pool's
// session reservation. It ends when the control plane says so, when the agent
// stops on purpose, or when the agent has been cut off from the control plane
// for longer than the node grace; a lost connection alone leaves it running
// (its processes, tmux and Jupyter included), for the control plane to take
// up again.
type hosted struct {
	setup api.SessionSetup
	home  string // absolute
	uid   int    // -1: run as the agent's own user
	gid   int
	cg    *cgroup
	// ctr is the session's container, in a pool with an image.
	ctr *sessionContainer
	// beforeEnd runs first when the session ends (removes the container).
	beforeEnd func()
	// secrets is the directory of the session's secret files ("": none).
	secrets string

	mu    sync.Mutex
	pgids map[int]bool
	nb    *notebookProc // the user's Jupyter server, if one runs here
	ended bool
}

// sessionIDRE leaves the bound of length (40 after "s-") to hostSession,
// as dspool.ValidName does.
var sessionIDRE = lazyregexp.New(`^s-[a-z0-9]+$`)

// hostSession returns the session, setting it up the first time: the
// user's account, home (0700) and notebook link on the share, and the cgroup.
func (ag *Agent) hostSession(s api.SessionSetup) (*hosted, error) {
	if len(s.Session) > len("s-")+40 || !sessionIDRE.MatchString(s.Session) || !dspool.ValidName(s.User.Name) ||
		s.Home != share.Home(s.User.Name) || s.Notebooks != share.Notebooks(s.User.Name) {
		return nil, fmt.Errorf("malformed session %q for user %q", s.Session, s.User.Name)
	}
	ag.smu.Lock()
	defer ag.smu.Unlock()
	if h := ag.sessions[s.Session]; h != nil {
		return h, nil
	}
	h := &hosted{setup: s, home: filepath.Join(ag.cfg.Share, s.Home), uid: -1, gid: -1, pgids: map[int]bool{}}
	if ag.root && s.User.UID != 0 {
		h.uid, h.gid = s.User.UID, s.User.GID
		if err := ag.accounts.ensure(s.User, h.home); err != nil {
			return nil, err
		}
	}
	if err := ag.makeHome(s); err != nil {
		return nil, err
	}
	if hasSecretFiles(s.Secrets) {
		dir, err := ag.writeSecrets(s.Session, h.uid, h.gid, s.Secrets)
		if err != nil {
			return nil, err
		}
		h.secrets = dir
	}
	// Variables come with each channel; files are written once, here.
	h.setup.Secrets = nil
	if ag.cgroups != nil {
		cg, err := ag.cgroups.create(s.Session, s.CPUs, s.Memory, ag.cfg.PidsLimit, ag.deniedGPUs(s.GPUs))
		if err != nil {
			ag.removeRuntime(s.Session)
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		h.cg = cg
	}
	if s.Image != "" {
		if err := ag.startSessionContainer(h); err != nil {
			if h.cg != nil {
				h.cg.remove()
			}
			ag.removeRuntime(s.Session)
			return nil, err
		}
		h.beforeEnd = func() { ag.removeSessionContainer(h) }
	}
	ag.sessions[s.Session] = h
	ag.log.Info("session started", "session", s.Session, "user", s.User.Name)
	return h, nil
}

// makeHome makes the user's home and notebook directories (the user's, in
// the agent's parents) and, acting as the user inside them, the link
// ~/notebooks/remote to the notebook directory where the user has left room
// for it.
func (ag *Agent) makeHome(s api.SessionSetup) error {
	o := ag.owner(s.User)
	for _, d := range []string{s.Home, s.Notebooks} {
		if err := ag.userDir(d, o, 0o700); err != nil {
			return err
		}
	}
	// The link is a convenience: a user who made ~/notebooks something else
	// (a link of their own) keeps it, and still logs in.
	err := share.As(o.UID, o.GID, func() error {
		if err := share.MkdirAll(ag.cfg.Share, s.Home+"/notebooks", o, 0o700); err != nil {
			return err
		}
		return share.Symlink(ag.cfg.Share, s.Home+"/notebooks/remote", filepath.Join(ag.cfg.Share, s.Notebooks))
	})
	if err != nil {
		ag.log.Info("no ~/notebooks/remote link for the session", "user", s.User.Name, "err", err)
	}
	return nil
}

// end kills every process left in the session and removes its cgroup.
func (h *hosted) end() {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	h.ended = true
	pgids := make([]int, 0, len(h.pgids))
	for p := range h.pgids {
		pgids = append(pgids, p)
	}
	h.mu.Unlock()
	for _, p := range pgids {
		_ = syscall.Kill(-p, syscall.SIGKILL)
	}
	if h.beforeEnd != nil {
		h.beforeEnd()
	}
	if h.cg != nil {
		h.cg.signal(syscall.SIGKILL)
		h.cg.remove()
	}
}

// secretEnv is the environment entries of the session's secrets: the
// variables that come with a channel, and the directory of its files. A
// value that cannot be a variable is left out (the control plane refuses
// them first).
func (h *hosted) secretEnv(vals []api.SecretValue) []string {
	var env []string
	for _, v := range vals {
		if e, err := secretEnv([]api.SecretValue{v}); err == nil {
			env = append(env, e...)
		}
	}
	if h.secrets != "" {
		env = append(env, "DSPOOL_SECRETS_DIR="+h.secrets)
	}
	return env
}

func (ag *Agent) endSession(id string) {
	ag.smu.Lock()
	h := ag.sessions[id]
	delete(ag.sessions, id)
	ag.smu.Unlock()
	if h != nil {
		h.end()
		ag.workEnded(h.uid, h.gid)
		if h.secrets != "" {
			ag.removeRuntime(id)
		}
		ag.log.Info("session ended", "session", id)
	}
}

// endAllSessions ends every session; it returns how many there were.
func (ag *Agent) endAllSessions() int {
	ag.smu.Lock()
	ids := make([]string, 0, len(ag.sessions))
	for id := range ag.sessions {
		ids = append(ids, id)
	}
	ag.smu.Unlock()
	for _, id := range ids {
		ag.endSession(id)
	}
	return len(ids)
}

// hostedSessions lists the sessions this node hosts, for the heartbeat.
func (ag *Agent) hostedSessions() []api.HostedSession {
	ag.smu.Lock()
	defer ag.smu.Unlock()
	out := make([]api.HostedSession, 0, len(ag.sessions))
	for id, h := range ag.sessions {
		hs := api.HostedSession{Session: id}
		h.mu.Lock()
		if h.nb != nil {
			hs.NotebookToken = h.nb.token
		}
		h.mu.Unlock()
		out = append(out, hs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Session < out[j].Session })
	return out
}

func (ag *Agent) serveSessionEnd(w http.ResponseWriter, r *http.Request) {
	var req api.SessionEnd
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad session end: "+err.Error(), http.StatusBadRequest)
		return
	}
	ag.endSession(req.Session)
	w.WriteHeader(http.StatusOK)
}

// hijack answers 101 and returns the stream, reading first what the HTTP
// server had buffered.
func hijack(w http.ResponseWriter, dataMode string) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n%s: %s\r\n\r\n",
		api.SessionUpgrade, api.DataModeHeader, dataMode)
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return &readConn{Conn: conn, r: brw.Reader}, nil
}

// clientEnv is what an SSH client may set in a session (OpenSSH's AcceptEnv
// on Debian): the locale.
func clientEnv(k, v string) bool {
	if k != "LANG" && !strings.HasPrefix(k, "LC_") || len(k) > 32 || len(v) > 256 {
		return false
	}
	for _, c := range k + v {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func (ag *Agent) sessionEnv(h *hosted, req *api.ChannelRequest, shell string) []string {
	s := &req.SessionSetup
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + h.home, "USER=" + s.User.Name, "LOGNAME=" + s.User.Name, "SHELL=" + shell, "LANG=C.UTF-8",
		"DSPOOL_SESSION=" + s.Session, "DSPOOL_POOL=" + s.Pool, "DSPOOL_NODE=" + ag.nodeName, "DSPOOL_SHARE=" + ag.cfg.Share,
		"DSPOOL_CPUS=" + s.CPUs.String(), "DSPOOL_MEMORY=" + strconv.FormatInt(int64(s.Memory), 10),
	}
	env = append(env, ag.gpuEnv(s.GPUs)...)
	env = append(env, h.secretEnv(s.Secrets)...)
	env = append(env, ag.workEnv(s.WorkToken)...)
	if req.Client != "" {
		env = append(env, "SSH_CLIENT="+req.Client, "SSH_CONNECTION="+req.Client+" "+req.Server)
	}
	if req.PTY != nil && req.PTY.Term != "" {
		env = append(env, "TERM="+req.PTY.Term)
	}
	for k, v := range req.Env {
		if clientEnv(k, v) {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// command is the process a channel runs, as OpenSSH runs it: a login shell,
// or the command line given to the user's shell with -c.
func (ag *Agent) command(req *api.ChannelRequest) (string, []string, error) {
	shell := "/bin/bash"
	if _, err := os.Stat(shell); err != nil {
		shell = "/bin/sh"
	}
	switch req.Kind {
	case api.ChannelShell:
		return shell, []string{"-" + filepath.Base(shell)}, nil
	case api.ChannelExec:
		return shell, []string{filepath.Base(shell), "-c", req.Command}, nil
	case api.ChannelSubsystem:
		if req.Command != "sftp" {
			return "", nil, fmt.Errorf("subsystem %q is not offered: only sftp is", req.Command)
		}
		if ag.sftpExe == nil {
			return "", nil, errors.New("sftp is not available on this node")
		}
		// The program runs from the descriptor the agent opened: the user
		// may not be able to reach its path (a private build directory).
		return "/proc/self/fd/3", ag.cfg.SFTPServer, nil
	}
	return "", nil, fmt.Errorf("unknown channel kind %q", req.Kind)
}

// transfer reports whether an exec channel is the server side of a file
// transfer, scp's (-t, -f) or rsync's.
func transfer(req *api.ChannelRequest) bool {
	if req.Kind != api.ChannelExec {
		return false
	}
	f := strings.Fields(req.Command)
	return len(f) >= 2 && (f[0] == "scp" && (slices.Contains(f, "-t") || slices.Contains(f, "-f")) ||
		f[0] == "rsync" && f[1] == "--server")
}

func (ag *Agent) serveChannel(w http.ResponseWriter, r *http.Request) {
	var req api.ChannelRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad channel request: "+err.Error(), http.StatusBadRequest)
		return
	}
	h, err := ag.hostSession(req.SessionSetup)
	if err != nil {
		http.Error(w, "set up the session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	path, argv, err := ag.command(&req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var cmd *exec.Cmd
	if h.ctr != nil && req.Kind != api.ChannelSubsystem && !transfer(&req) {
		// In the session's container; sftp, scp and rsync serve the share
		// from the node (the image need not have them).
		if cmd, err = ag.execCmd(h, &req, ag.sessionEnv(h, &req, "/bin/sh")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	} else {
		cmd = &exec.Cmd{Path: path, Args: argv, Env: ag.sessionEnv(h, &req, path), Dir: h.home,
			SysProcAttr: sysProcAttr(h.uid, h.gid, h.cg)}
	}
	if req.Kind == api.ChannelSubsystem {
		cmd.ExtraFiles = []*os.File{ag.sftpExe}
	}
	// The thread that will start the process joins its cgroups (on v1, a
	// wait for the kernel) while the data connection is opened.
	sp := prepareSpawn(procCgroup(cmd, h))
	// stdin and stdout on a connection of their own, when the control
	// plane asks; without it, they go in frames. Without a terminal, the
	// process reads its stdin from that socket itself; its stdout goes from
	// a pipe to the socket with splice(2). Neither passes through this
	// process's memory.
	mode := api.DataModeFrames
	var data net.Conn
	var dataBuf *bufio.Reader
	if req.Data != "" && !ag.cfg.FramedSessions {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		if req.Dial != nil {
			data, dataBuf, err = dialGateway(ctx, req.Dial, api.GatewayStreamData, "")
		} else {
			data, dataBuf, err = ag.dialUpgrade(ctx, "/api/v1/agents/data", api.DataUpgrade, http.Header{api.DataTokenHeader: {req.Data}}, 0)
		}
		cancel()
		if err != nil {
			ag.log.Warn("session data connection; using frames", "session", req.Session, "err", err)
			data = nil
		} else {
			mode = api.DataModeConn
		}
	}
	var stdin *os.File
	if data != nil && req.PTY == nil {
		stdin = socketFile(data)
	}
	p, err := startProc(sp, cmd, h, req.PTY, stdin)
	if stdin != nil {
		stdin.Close()
	}
	if err != nil {
		if data != nil {
			data.Close()
		}
		http.Error(w, fmt.Sprintf("start %s: %v", argv[0], unwrapExec(err)), http.StatusInternalServerError)
		return
	}
	p.data, p.dataBuf = data, dataBuf
	if req.Dial != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		conn, _, err := dialGateway(ctx, req.Dial, api.GatewayStreamFrames, mode)
		cancel()
		if err != nil {
			if p.data != nil {
				p.data.Close()
			}
			p.hangup()
			http.Error(w, fmt.Sprintf("connect to the SSH gateway at %s: %v", req.Dial.Addr, err), http.StatusBadGateway)
			return
		}
		// The channel is the gateway's now: its bytes no longer pass
		// through the control plane, and this stream ends here.
		w.Header().Set(api.DataModeHeader, mode)
		w.WriteHeader(http.StatusOK)
		go p.serve(conn)
		return
	}
	conn, err := hijack(w, mode)
	if err != nil {
		if p.data != nil {
			p.data.Close()
		}
		p.hangup()
		return
	}
	p.serve(conn)
}

// dialGateway opens a connection of a channel to the SSH gateway that
// asked for it (api.Dial), verified by the pin of its key: stream is what
// it carries (api.GatewayStream*), and mode, for the frames, whether
// stdin and stdout come on a data connection of their own.
func dialGateway(ctx context.Context, d *api.Dial, stream, mode string) (net.Conn, *bufio.Reader, error) {
	h := http.Header{api.DataTokenHeader: {d.Token}, api.GatewayStreamHeader: {stream}}
	if mode != "" {
		h.Set(api.DataModeHeader, mode)
	}
	conn, br, _, err := upgradeAt(ctx, "https://"+d.Addr, tlsca.KeyPinnedConfig(d.Pin), "", "/gateway/stream", api.GatewayUpgrade, h, 0)
	return conn, br, err
}
