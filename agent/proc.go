package agent

// The processes of a session's channels: their stdio (terminal, pipes, the
// data connection), signals, hang-up and exit status.

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/dspool/dspool/api"
)

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

// procCgroup is the cgroup cmd starts in: h's, unless it is podman exec
// as root, whose process joins the container (in h's cgroup) itself.
func procCgroup(cmd *exec.Cmd, h *hosted) *cgroup {
	if cmd.SysProcAttr.Credential == nil && h.ctr != nil {
		return nil
	}
	return h.cg
}

// startProc starts cmd with its stdio from sp (prepared in
// procCgroup(cmd, h)): a terminal with t, else pipes, but stdin from the
// given file when there is one (the process gets it in blocking mode, and
// so does the connection it comes from).
func startProc(sp *spawner, cmd *exec.Cmd, h *hosted, t *api.PTY, stdin *os.File) (*proc, error) {
	p := &proc{cmd: cmd, h: h}
	var child []*os.File
	if t != nil {
		ptmx, tty, err := pty.Open()
		if err != nil {
			sp.cancel()
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
				sp.cancel()
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
	err := sp.start(cmd)
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
// from children that keep its stdout open (OpenSSH waits for them forever),
// once nothing the process wrote is left to deliver.
const drainAfterExit = 2 * time.Second

// awaitDrained waits for drained, giving up once pending has said nothing
// is left to deliver for drainAfterExit: what the process wrote before it
// exited reaches the client however slowly it reads.
func awaitDrained(drained <-chan struct{}, pending func() bool) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	idle := time.Now()
	for {
		select {
		case <-drained:
			return
		case <-t.C:
		}
		if pending() {
			idle = time.Now()
		} else if time.Since(idle) >= drainAfterExit {
			return
		}
	}
}

// unread reports whether the pipe or terminal f holds bytes not yet read.
func unread(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	// TIOCINQ is FIONREAD: of a pipe, the bytes in it; of a terminal's
	// master, the bytes its process wrote.
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return n > 0
}

// busyWriter counts its writes under way in n.
type busyWriter struct {
	w io.Writer
	n *atomic.Int32
}

func (b busyWriter) Write(p []byte) (int, error) {
	b.n.Add(1)
	defer b.n.Add(-1)
	return b.w.Write(p)
}

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
	// writing counts the writes of stdout to a data connection under way:
	// over TLS a chunk read from the pipe is on its way there (with
	// splice(2) to a plain socket, what is on its way stays in the pipe).
	var writing atomic.Int32
	switch {
	case p.data != nil:
		defer p.data.Close()
		copies.Add(1)
		go func() {
			defer copies.Done()
			var dst io.Writer = p.data
			if _, ok := p.data.(*net.TCPConn); !ok {
				dst = busyWriter{p.data, &writing}
			}
			_, _ = io.Copy(dst, out) // splice(2) from the pipe to a plain socket
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
	awaitDrained(drained, func() bool {
		return writing.Load() > 0 || unread(out) || p.stderr != nil && unread(p.stderr)
	})
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
	if tc, ok := raw.(*tls.Conn); ok {
		if rc, ok := tc.NetConn().(*rawConn); ok {
			_ = copyDecrypted(in, tc, rc)
			if p.stdin != nil {
				p.stdin.Close()
			}
			return
		}
	}
	_, _ = io.Copy(in, raw) // splice(2) from the socket to the pipe
	if p.stdin != nil {
		p.stdin.Close()
	}
}

// copyDecrypted copies what the TLS connection tc (over rc) decrypts to w
// until it ends, in writes of as many records as were read from the socket
// together (up to 256 KiB): tc's Read gives one record (16 KiB) at a time,
// and a write of each into the pipe would wake its reader each time.
// Nothing decrypted waits for more input: what is gathered is written
// before rc's next read of the socket.
func copyDecrypted(w io.Writer, tc *tls.Conn, rc *rawConn) error {
	buf := make([]byte, 256<<10)
	var start, end int // buf[start:end] is decrypted and not yet written
	flush := func() error {
		if start == end {
			return nil
		}
		_, err := w.Write(buf[start:end])
		start = end
		return err
	}
	rc.wait = flush
	defer func() { rc.wait = nil }()
	for {
		if len(buf)-end < 16<<10+256 { // less than a record's room
			if err := flush(); err != nil {
				return err
			}
			start, end = 0, 0
		}
		n, err := tc.Read(buf[end:])
		end += n
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
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
