package agent

// Sessions of a pool with an image (docs/decisions/0026-images.md): one
// container per session, started with the session and removed at its end,
// in the session's cgroup; each shell or command of its SSH channels runs
// in it with `podman exec`, as the user.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dspool/dspool/api"
)

// sessionContainer is a session's container and what it needs of podman.
type sessionContainer struct {
	c *container
	p *podman
	// envFiles are the channels' env files, removed with the session.
	envFiles []string
	n        int
}

// startSessionContainer starts the container of session h: its init
// (catatonit, which podman mounts at /run/podman-init) pausing as its one
// process, for the channels' processes to join.
func (ag *Agent) startSessionContainer(h *hosted) error {
	s := &h.setup
	if h.cg == nil {
		return noPodman(ag.nodeName, "the agent has no cgroups")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := ag.owner(s.User)
	p, ref, c, err := ag.prepareContainer(ctx, imageRef{s.Image, s.ImageFile, s.ImageNetwork}, s.Session, o)
	if err != nil {
		return err
	}
	args := ag.runArgs(c, s.Session, o, h.cg, s.Memory, ag.sessionMounts(h))
	args = append(args, "--detach", "--log-driver", "none", "--workdir", h.home, "--", ref, "/run/podman-init", "-P")
	if out, err := p.command(ctx, args...).CombinedOutput(); err != nil {
		ag.removeContainer(c)
		return fmt.Errorf("start the session's container in image %s: %v: %s", s.Image, err, firstLine(string(out)))
	}
	h.ctr = &sessionContainer{c: c, p: p}
	return nil
}

// execCmd is the `podman exec` that runs a channel's shell or command in
// the session's container, as its user, with env in a file of root's.
func (ag *Agent) execCmd(h *hosted, req *api.ChannelRequest, env []string) (*exec.Cmd, error) {
	sc := h.ctr
	h.mu.Lock()
	sc.n++
	file := filepath.Join(ag.runtime, h.setup.Session+"-"+strconv.Itoa(sc.n)+".env")
	sc.envFiles = append(sc.envFiles, file)
	h.mu.Unlock()
	if err := writeEnvFile(file, env); err != nil {
		return nil, err
	}
	args := append(append([]string(nil), sc.c.store...), "exec", "--interactive", "--user",
		fmt.Sprintf("%d:%d", h.setup.User.UID, h.setup.User.GID), "--workdir", h.home, "--env-file", file)
	if req.PTY != nil {
		args = append(args, "--tty")
	}
	// The image's shell: bash where it has one, else sh, as a login shell
	// for a shell channel, with -c for a command.
	const pick = `if command -v bash >/dev/null 2>&1; then s=bash; else s=sh; fi; `
	args = append(args, sc.c.name, "/bin/sh", "-c")
	if req.Kind == api.ChannelShell {
		args = append(args, pick+`exec "$s" -l`)
	} else {
		args = append(args, pick+`exec "$s" -c "$1"`, "sh", req.Command)
	}
	cmd := sc.p.command(context.Background(), args...)
	cmd.SysProcAttr = sysProcAttr(-1, -1, nil)
	return cmd, nil
}

// removeSessionContainer removes the containers of a session that ended,
// its Jupyter server's too, before its cgroup goes (conmon must see the
// container end).
func (ag *Agent) removeSessionContainer(h *hosted) {
	sc := h.ctr
	if sc == nil {
		return
	}
	h.mu.Lock()
	nb := h.nb
	h.mu.Unlock()
	if nb != nil {
		ag.removeNotebookContainer(nb.ctr)
	}
	ag.removeContainer(sc.c)
	h.mu.Lock()
	files := sc.envFiles
	h.mu.Unlock()
	for _, f := range files {
		_ = os.Remove(f)
	}
}
