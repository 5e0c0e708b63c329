package agent

// Jupyter servers of sessions in images (docs/decisions/0026-images.md):
// the server runs in the session's image, in a container of its own beside
// the one of the session's SSH channels, in the session's cgroup. Its
// `podman run` is the server's process for the agent (its output, its end,
// SIGTERM passed to the container's init); the container's init, found
// once it runs, is the root of the server's processes (their cpu for the
// idle culler), and its network namespace, when the pool's image_network
// gives it one of its own, is where the agent dials the server.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// notebookContainer is the container a session's Jupyter server runs in.
type notebookContainer struct {
	c       *container
	p       *podman
	image   string
	command string // the pool's Jupyter command, as the image must have it

	mu     sync.Mutex
	pid    int      // the container's init as the node sees it; 0 until found
	netns  *os.File // its network namespace, when it has one of its own
	closed bool
}

// notebookContainerCmd prepares the `podman run` of session h's Jupyter
// server, args its command line in the image, env its environment (in a
// file of root's, as a job's).
func (ag *Agent) notebookContainerCmd(ctx context.Context, h *hosted, env, args []string) (*exec.Cmd, *notebookContainer, error) {
	s := &h.setup
	name := s.Session + "-jupyter"
	o := ag.owner(s.User)
	p, ref, c, err := ag.prepareContainer(ctx, imageRef{s.Image, s.ImageFile, s.ImageNetwork}, name, o)
	if err != nil {
		return nil, nil, err
	}
	c.envFile = filepath.Join(ag.runtime, name+".env")
	if err := writeEnvFile(c.envFile, env); err != nil {
		return nil, nil, err
	}
	run := ag.runArgs(c, name, o, h.cg, s.Memory, ag.sessionMounts(h))
	run = append(run, "--log-driver", "passthrough", "--env-file", c.envFile, "--workdir", h.home, "--", ref)
	run = append(run, args...)
	cmd := p.command(context.Background(), run...)
	cmd.SysProcAttr = sysProcAttr(-1, -1, nil)
	return cmd, &notebookContainer{c: c, p: p, image: s.Image, command: args[0]}, nil
}

// sessionMounts are the node's files a session's containers see, read-only:
// its secrets directory and the pool's CA.
func (ag *Agent) sessionMounts(h *hosted) []string {
	var mounts []string
	if h.secrets != "" {
		mounts = append(mounts, h.secrets)
	}
	if ag.caFile != "" {
		mounts = append(mounts, ag.caFile)
	}
	return mounts
}

// locateNotebook finds the container's init of a server in an image, and
// its network namespace where that is not the node's: nil once known (and
// at once without a container), an error while the container does not run
// yet.
func (ag *Agent) locateNotebook(ctx context.Context, nb *notebookProc) error {
	nc := nb.ctr
	if nc == nil || nc.initPID() > 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	args := append(append([]string(nil), nc.c.store...), "inspect", "--type", "container", "--format", "{{.State.Pid}}", nc.c.name)
	out, err := nc.p.command(ctx, args...).Output()
	if err != nil {
		return fmt.Errorf("inspect the Jupyter server's container: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return errors.New("the Jupyter server's container does not run yet")
	}
	var ns *os.File
	if nc.c.network != "host" {
		if ns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
			return fmt.Errorf("the network of the Jupyter server's container: %w", err)
		}
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.closed {
		if ns != nil {
			ns.Close()
		}
		return errors.New("the Jupyter server's container is gone")
	}
	nc.pid, nc.netns = pid, ns
	return nil
}

func (nc *notebookContainer) initPID() int {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.pid
}

func (nc *notebookContainer) netnsFile() *os.File {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.netns
}

// startFailed says why a server in an image ended while it started: the
// container's init reports an image without the pool's Jupyter command
// ("failed to exec pid1"), as podman does without an init (127 or 126).
func (nc *notebookContainer) startFailed(nb *notebookProc) error {
	code := nb.cmd.ProcessState.ExitCode()
	if strings.Contains(nb.log.String(), "failed to exec pid1") {
		code = 127
	}
	switch code {
	case 127, 126:
		return fmt.Errorf("the Jupyter server cannot start in the pool's image %s: it has no program %s that runs (the pool's jupyter command must be in its image); the last lines:\n%s",
			nc.image, nc.command, nb.log)
	case podmanFailed:
		return fmt.Errorf("podman could not run the pool's image %s for the Jupyter server; the last lines:\n%s", nc.image, nb.log)
	}
	return fmt.Errorf("the Jupyter server exited while starting in the pool's image %s (%s); its last lines:\n%s", nc.image, nb.cmd.ProcessState, nb.log)
}

// removeNotebookContainer removes a server's container (nil: none) and
// lets go of its network namespace; it may be called more than once.
func (ag *Agent) removeNotebookContainer(nc *notebookContainer) {
	if nc == nil {
		return
	}
	nc.mu.Lock()
	ns := nc.netns
	nc.netns, nc.closed = nil, true
	nc.mu.Unlock()
	if ns != nil {
		ns.Close()
	}
	ag.removeContainer(nc.c)
}

// dialInNetns connects to addr from inside the network namespace ns. The
// socket is made on a thread that enters ns and comes back before it is
// given back to the runtime. The thread must not end instead: a process
// the agent started from it (Pdeathsig) would be killed with it; so a
// thread that cannot come back is left locked, and wedged, not ended.
func dialInNetns(ctx context.Context, ns *os.File, addr string) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- dialed{nil, fmt.Errorf("the agent's own network: %w", err)}
			return
		}
		defer home.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- dialed{nil, fmt.Errorf("enter the container's network: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} else {
			defer wedge()
		}
		ch <- dialed{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// wedge keeps the calling goroutine, and the thread it is locked to, for
// ever.
func wedge() { select {} }
