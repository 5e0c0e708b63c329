package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/share"
	"golang.org/x/sys/unix"
)

// hosted is an interactive session on this node: the processes of every
// SSH channel of one user's session, in one cgroup sized by the pool's
// session reservation. It ends when the control plane says so, or when the
// connection to the control plane is lost (its SSH connections went with it).
type hosted struct {
	setup api.SessionSetup
	home  string // absolute
	uid   int    // -1: run as the agent's own user
	gid   int
	cg    *cgroup
	// secrets is the directory of the session's secret files ("": none).
	secrets string

	mu    sync.Mutex
	pgids map[int]bool
	nb    *notebookProc // the user's Jupyter server, if one runs here
	ended bool
}

var sessionIDRE = regexp.MustCompile(`^s-[a-z0-9]{1,40}$`)

// hostSession returns the session, setting it up the first time: the
// user's account, home (0700) and notebook link on the share, and the cgroup.
func (ag *Agent) hostSession(s api.SessionSetup) (*hosted, error) {
	if !sessionIDRE.MatchString(s.Session) || !dspool.ValidName(s.User.Name) ||
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
	for _, d := range []string{"home", "notebooks"} {
		if err := share.MkdirAll(ag.cfg.Share, d, -1, -1, 0o755); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{s.Home, s.Notebooks, s.Home + "/notebooks"} {
		if err := share.MkdirAll(ag.cfg.Share, d, h.uid, h.gid, 0o700); err != nil {
			return nil, err
		}
	}
	if err := share.Symlink(ag.cfg.Share, s.Home+"/notebooks/remote", filepath.Join(ag.cfg.Share, s.Notebooks), h.uid, h.gid); err != nil {
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
		cg, err := ag.cgroups.create(s.Session, s.CPUs, s.Memory, ag.cfg.PidsLimit)
		if err != nil {
			ag.removeRuntime(s.Session)
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		h.cg = cg
	}
	ag.sessions[s.Session] = h
	ag.log.Info("session started", "session", s.Session, "user", s.User.Name)
	return h, nil
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
		if h.secrets != "" {
			ag.removeRuntime(id)
		}
		ag.log.Info("session ended", "session", id)
	}
}

// endAllSessions ends every session: their SSH connections lived in the
// control plane this agent just lost.
func (ag *Agent) endAllSessions() {
	ag.smu.Lock()
	ids := make([]string, 0, len(ag.sessions))
	for id := range ag.sessions {
		ids = append(ids, id)
	}
	ag.smu.Unlock()
	for _, id := range ids {
		ag.endSession(id)
	}
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
	}
	env = append(env, h.secretEnv(s.Secrets)...)
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
	cmd := &exec.Cmd{Path: path, Args: argv, Env: ag.sessionEnv(h, &req, path), Dir: h.home,
		SysProcAttr: sysProcAttr(h.uid, h.gid, h.cg)}
	if req.Kind == api.ChannelSubsystem {
		cmd.ExtraFiles = []*os.File{ag.sftpExe}
	}
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
		data, dataBuf, err = ag.dialUpgrade(ctx, "/api/v1/agents/data", api.DataUpgrade, http.Header{api.DataTokenHeader: {req.Data}}, 0)
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
	p, err := startProc(cmd, h, req.PTY, stdin)
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

// proc is one process of a session with its stdio.
type proc struct {
	cmd    *exec.Cmd
	h      *hosted
	ptmx   *os.File // with a terminal
	stdin  *os.File // without one
	stdout *os.File
	stderr *os.File
	// data carries stdin and stdout when set (dataBuf holds what arrived
	// with the connection's answer); otherwise they are in frames.
	data    net.Conn
	dataBuf *bufio.Reader
}

// socketFile returns the socket of a plain TCP connection as a file, to be
// a process's stdin, or nil.
func socketFile(c net.Conn) *os.File {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil // TLS: the bytes must be decrypted here
	}
	f, err := tc.File()
	if err != nil {
		return nil
	}
	return f
}

// startProc starts cmd with its stdio: a terminal with t, else pipes, but
// stdin from the given file when there is one (the process gets it in
// blocking mode, and so does the connection it comes from).
func startProc(cmd *exec.Cmd, h *hosted, t *api.PTY, stdin *os.File) (*proc, error) {
	p := &proc{cmd: cmd, h: h}
	var child []*os.File
	if t != nil {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("open a terminal: %w", err)
		}
		_ = pty.Setsize(ptmx, &pty.Winsize{Cols: uint16(min(t.Cols, 1<<15)), Rows: uint16(min(t.Rows, 1<<15))})
		if h.uid >= 0 {
			_ = tty.Chown(h.uid, h.gid)
			_ = tty.Chmod(0o620)
		}
		p.ptmx = ptmx
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setpgid = false
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
		child = []*os.File{tty}
	} else {
		var pipes [3][2]*os.File // stdin, stdout, stderr: read end, write end
		for i := range pipes {
			if i == 0 && stdin != nil {
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				for _, f := range pipes[:i] {
					closeFiles(f[:]...)
				}
				return nil, err
			}
			pipes[i] = [2]*os.File{r, w}
		}
		// Larger pipes: fewer wake-ups per byte of a bulk copy (scp, rsync,
		// cat > file) on both sides.
		for _, f := range []*os.File{pipes[0][1], pipes[1][1]} {
			if f != nil {
				_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
			}
		}
		p.stdin, p.stdout, p.stderr = pipes[0][1], pipes[1][0], pipes[2][0]
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pipes[0][0], pipes[1][1], pipes[2][1]
		if stdin != nil {
			cmd.Stdin = stdin
		} else {
			child = append(child, pipes[0][0])
		}
		child = append(child, pipes[1][1], pipes[2][1])
	}
	err := spawn(cmd, h.cg)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		p.closeAll()
		return nil, err
	}
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		p.closeAll()
		return nil, errors.New("the session has ended")
	}
	h.pgids[cmd.Process.Pid] = true
	h.mu.Unlock()
	return p, nil
}

func (p *proc) closeAll() {
	closeFiles(p.ptmx, p.stdin, p.stdout, p.stderr)
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// hangup tells the process group its client is gone: SIGHUP, then SIGKILL
// a few seconds later if it is still there.
func (p *proc) hangup() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGHUP)
	_ = syscall.Kill(-pgid, syscall.SIGCONT)
	time.AfterFunc(5*time.Second, func() {
		p.h.mu.Lock()
		alive := p.h.pgids[pgid]
		p.h.mu.Unlock()
		if alive {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
}

// drainAfterExit is how long output is still read after the process exits,
// from children that keep its stdout open (OpenSSH waits for them forever).
const drainAfterExit = 2 * time.Second

// serve carries the process's stdio and control until it exits: frames on
// the stream, and stdin and stdout on the data connection when there is one.
func (p *proc) serve(conn net.Conn) {
	defer conn.Close()
	fw := api.NewFrameWriter(conn)
	var copies sync.WaitGroup
	pump := func(typ byte, f *os.File) {
		defer copies.Done()
		_, _ = fw.Pump(typ, f, nil)
	}
	out := p.stdout
	if p.ptmx != nil {
		out = p.ptmx
	}
	switch {
	case p.data != nil:
		defer p.data.Close()
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(p.data, out) // splice(2) from the pipe to the socket
			closeWrite(p.data)
		}()
		if p.stdin != nil || p.ptmx != nil {
			go p.stdinFromData() // else the process reads the socket
		}
	default:
		copies.Add(1)
		go pump(api.FrameData, out)
	}
	if p.ptmx == nil {
		copies.Add(1)
		go pump(api.FrameStderr, p.stderr)
	}
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		p.input(api.NewFrameReader(conn))
	}()
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	var werr error
	select {
	case werr = <-exited:
	case <-clientGone:
		p.hangup()
		werr = <-exited
	}
	pgid := p.cmd.Process.Pid
	p.h.mu.Lock()
	delete(p.h.pgids, pgid)
	p.h.mu.Unlock()
	drained := make(chan struct{})
	go func() { copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainAfterExit):
	}
	p.closeAll()
	if p.data != nil {
		closeWrite(p.data) // stdout ends before the exit is sent
	}
	<-drained
	_ = fw.WriteFrame(api.FrameExit, exitFrame(werr))
}

// stdinFromData copies the data connection to the process's stdin until the
// control plane closes its side, then closes stdin.
func (p *proc) stdinFromData() {
	in := p.stdin
	if p.ptmx != nil {
		in = p.ptmx
	}
	if n := p.dataBuf.Buffered(); n > 0 {
		b, _ := p.dataBuf.Peek(n)
		_, _ = in.Write(b)
	}
	raw := p.data
	if rc, ok := raw.(*readConn); ok {
		raw = rc.Conn
	}
	_, _ = io.Copy(in, raw) // splice(2) from the socket to the pipe
	if p.stdin != nil {
		p.stdin.Close()
	}
}

func closeWrite(c net.Conn) {
	if rc, ok := c.(*readConn); ok {
		c = rc.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// input applies the control plane's frames to the process.
func (p *proc) input(fr *api.FrameReader) {
	in := p.stdin
	if p.ptmx != nil {
		in = p.ptmx
	}
	for {
		typ, b, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch typ {
		case api.FrameData:
			if _, err := in.Write(b); err != nil && p.ptmx == nil {
				// The process closed its stdin; keep reading frames so the
				// stream still carries control.
				in = nil
			}
		case api.FrameEOF:
			if p.stdin != nil {
				p.stdin.Close()
			}
		case api.FrameWindow:
			if p.ptmx != nil && len(b) == 8 {
				cols, rows := binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint32(b[4:])
				_ = pty.Setsize(p.ptmx, &pty.Winsize{Cols: uint16(min(cols, 1<<15)), Rows: uint16(min(rows, 1<<15))})
			}
		case api.FrameSignal:
			if sig, ok := signals[string(b)]; ok {
				_ = syscall.Kill(-p.cmd.Process.Pid, sig)
			}
		}
		if in == nil {
			in = devNull
		}
	}
}

var devNull, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)

// signals are the names SSH gives signals (RFC 4254 6.10).
var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

func exitFrame(werr error) []byte {
	e := api.Exit{}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		e.Status = ws.ExitStatus()
		if ws.Signaled() {
			for name, s := range signals {
				if s == ws.Signal() {
					e.Signal = name
				}
			}
			if e.Signal == "" {
				e.Status = 128 + int(ws.Signal())
			}
		}
	} else if werr != nil {
		e.Status, e.Message = 255, werr.Error()
	}
	b, _ := json.Marshal(e)
	return b
}
