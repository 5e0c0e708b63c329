package agentsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childEnv marks a process that Spawn started: Child runs the fleet in it.
const childEnv = "DSPOOL_AGENTSIM_CHILD"

// User is who a spawned fleet runs as.
type User struct{ UID, GID int }

// Unprivileged returns the user a root process runs its fleet as (the
// account nobody), or nil when this process is not root: the fleet then
// runs as this process's user.
func Unprivileged() (*User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("simulated agents run as the account nobody when the benchmark runs as root, and this machine has none (%w): create it (useradd -r nobody), or run as another user", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &User{UID: uid, GID: gid}, nil
}

// Process is a fleet running in a child process.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	events sync.WaitGroup // the reader of the child's events
	done   chan struct{}  // closed when the child has exited
	err    error          // how it exited, once done
}

// Spawn runs a fleet in a child process, this program started again: its
// main must call Child first. With as, the child runs as that user, who is
// given o.Dir (and this program, copied there). events is called, from one
// goroutine, with each event of the fleet until the child exits.
func Spawn(o Options, as *User, events func(Event)) (*Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("agentsim: find this program to start it again: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("agentsim: %w", err)
	}
	if as != nil {
		// The program `go run` built lies in a directory only its user
		// may enter.
		own := filepath.Join(o.Dir, "agentsim")
		if err := copyFile(exe, own); err != nil {
			return nil, fmt.Errorf("agentsim: copy this program for user %d: %w", as.UID, err)
		}
		exe = own
		if err := chownAll(o.Dir, as); err != nil {
			return nil, fmt.Errorf("agentsim: give %s to user %d: %w", o.Dir, as.UID, err)
		}
	}
	opts, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	p := &Process{cmd: exec.Command(exe), stderr: &tailBuffer{max: 16 << 10}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), childEnv+"=1")
	p.cmd.Dir = o.Dir
	p.cmd.Stderr = p.stderr
	// It dies with this process, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if as != nil {
		p.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(as.UID), Gid: uint32(as.GID), Groups: []uint32{}}
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("agentsim: start %s: %w", exe, err)
	}
	if _, err := p.stdin.Write(append(opts, '\n')); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		return nil, fmt.Errorf("agentsim: send the fleet's options: %w (its stderr: %s)", err, p.stderr)
	}
	p.events.Go(func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events(ev)
			}
		}
	})
	go func() {
		p.events.Wait() // every event read before Wait closes the pipe
		err := p.cmd.Wait()
		if err != nil {
			err = fmt.Errorf("the simulated agents' process: %w: %s", err, p.stderr)
		}
		p.err = err
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the child has exited; Err then says how.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is nil once the child has exited cleanly.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("the simulated agents' process is still running")
	}
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop stops every agent (their nodes stay in the pool) and waits
// for the child to exit, killing it after timeout.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("the simulated agents did not stop within %s: killed them", timeout)
	}
	return p.err
}

// Child runs the fleet when this process is one Spawn started, and exits;
// otherwise it returns at once. Call it first thing in main.
func Child() {
	if os.Getenv(childEnv) == "" {
		return
	}
	if err := child(); err != nil {
		fmt.Fprintln(os.Stderr, "agentsim:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func child() error {
	// Each agent holds a socket and its state directory's lock: make room
	// up to the limit this process may set.
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read the fleet's options: %w", err)
	}
	var o Options
	if err := json.Unmarshal(line, &o); err != nil {
		return fmt.Errorf("read the fleet's options: %w", err)
	}
	if need := uint64(3*o.Nodes + 64); l.Cur < need {
		return fmt.Errorf("%d simulated agents need about %d open files, and this process may open %d: raise the limit (ulimit -n) before starting them", o.Nodes, need, l.Cur)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, in) // the parent closed its end: stop
		cancel()
	}()
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	return Run(ctx, o, func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
	})
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := to + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, to)
}

func chownAll(dir string, u *User) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, u.UID, u.GID)
	})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(t.b.String())
	if s == "" {
		return "(nothing on stderr)"
	}
	return s
}
