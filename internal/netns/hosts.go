// Package netns makes "machines" of network namespaces on one bridge, for
// the end-to-end tests and benchmarks that need several hosts on one
// computer (../shared/engines/netns-hosts.sh shows the same by hand), and
// serves a directory of one host to others over sshfs.
//
// Processes run "on" a host with only their network changed (nsenter
// --net, or a thread moved into the namespace): cgroups, mounts and
// accounts stay this machine's. It never adds an address or a route to
// this machine's own network but an "unreachable" route for the range it
// uses, so that nothing meant for the hosts leaves the machine; it must
// never be given a range that is in use.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is what Up and ServeShare return when this machine cannot
// make hosts or serve a share (not root, a command or FUSE missing, network
// namespaces not permitted): a reason to skip, not a failure.
var ErrUnavailable = errors.New("unavailable here")

// Config names the hosts. Every field is required.
type Config struct {
	Net    string // the first three octets of the /24 the hosts are on, e.g. 10.79.0
	Prefix string // host i's namespace is Prefix followed by i, e.g. dsph1
	Switch string // the namespace of the bridge, e.g. dspsw
	N      int    // hosts Net.1 to Net.N
}

// Hosts are running hosts, 1 to N.
type Hosts struct {
	cfg Config
}

// Up makes the hosts, first removing what an interrupted run with the same
// names left. On error it has removed what it made.
func Up(cfg Config) (*Hosts, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: network namespaces need root", ErrUnavailable)
	}
	if ip := net.ParseIP(cfg.Net + ".0").To4(); ip == nil || !ip.IsPrivate() || cfg.Prefix == "" || cfg.Switch == "" || cfg.N < 1 || cfg.N > 250 {
		return nil, fmt.Errorf("hosts %+v: want a private /24 (e.g. 10.79.0), names and 1 to 250 hosts", cfg)
	}
	for _, c := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%w: needs %s (apt-get install iproute2 util-linux)", ErrUnavailable, c)
		}
	}
	h := &Hosts{cfg: cfg}
	_ = h.Down()
	steps := [][]string{{"route", "add", "unreachable", cfg.Net + ".0/24"}, {"netns", "add", cfg.Switch},
		{"-n", cfg.Switch, "link", "add", "br0", "type", "bridge"}, {"-n", cfg.Switch, "link", "set", "br0", "up"}}
	for i := 1; i <= cfg.N; i++ {
		v, hn := fmt.Sprintf("v%d", i), h.Name(i)
		steps = append(steps, []string{"netns", "add", hn},
			[]string{"link", "add", "eth0", "netns", hn, "type", "veth", "peer", "name", v, "netns", cfg.Switch},
			[]string{"-n", cfg.Switch, "link", "set", v, "master", "br0"}, []string{"-n", cfg.Switch, "link", "set", v, "up"},
			[]string{"-n", hn, "link", "set", "lo", "up"}, []string{"-n", hn, "addr", "add", h.Addr(i) + "/24", "dev", "eth0"},
			[]string{"-n", hn, "link", "set", "eth0", "up"})
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			_ = h.Down()
			return nil, fmt.Errorf("%w: network namespaces: %v", ErrUnavailable, err)
		}
	}
	return h, nil
}

// Down kills what still runs on the hosts (only their user starts
// processes there), then removes them, the bridge and the route.
func (h *Hosts) Down() error {
	var errs []error
	for i := 1; i <= h.cfg.N; i++ {
		if _, err := os.Stat(h.Path(i)); err != nil {
			continue
		}
		for _, pid := range h.pids(i) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if err := ip("netns", "del", h.Name(i)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat("/run/netns/" + h.cfg.Switch); err == nil {
		if err := ip("netns", "del", h.cfg.Switch); err != nil {
			errs = append(errs, err)
		}
	}
	if out, _ := exec.Command("ip", "route", "show", "type", "unreachable", h.cfg.Net+".0/24").Output(); len(out) > 0 {
		if err := ip("route", "del", "unreachable", h.cfg.Net+".0/24"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pids are the processes in host i's network namespace.
func (h *Hosts) pids(i int) []int {
	out, _ := exec.Command("ip", "netns", "pids", h.Name(i)).Output()
	var pids []int
	for f := range strings.FieldsSeq(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// N is how many hosts there are.
func (h *Hosts) N() int { return h.cfg.N }

// Addr is host i's address.
func (h *Hosts) Addr(i int) string { return fmt.Sprintf("%s.%d", h.cfg.Net, i) }

// Name is host i's namespace.
func (h *Hosts) Name(i int) string { return h.cfg.Prefix + strconv.Itoa(i) }

// Path is the file of host i's namespace.
func (h *Hosts) Path(i int) string { return "/run/netns/" + h.Name(i) }

// Command is a command that runs on host i, through nsenter (which execs
// it: the process's PID is the command's).
func (h *Hosts) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + h.Path(i), "--", name}, args...)...)
}

// CommandContext is Command with a context that kills it.
func (h *Hosts) CommandContext(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.Path(i), "--", name}, args...)...)
}

// Do runs fn on an OS thread moved into host i's network namespace, and
// waits for it: the sockets fn opens and the processes it starts in its own
// goroutine are host i's, and stay so (cmd.Start starts a process there
// without nsenter). Goroutines fn starts run elsewhere.
func (h *Hosts) Do(i int, fn func() error) error {
	done := make(chan error, 1)
	// A goroutine of its own: should its thread fail to come back, it ends
	// with the goroutine instead of running anything else in host i.
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer self.Close()
		there, err := os.Open(h.Path(i))
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer there.Close()
		if err := unix.Setns(int(there.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter %s: %w", h.Name(i), err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("leave %s: %w", h.Name(i), err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// Dialer dials from host i, for an http.Transport's DialContext.
func (h *Hosts) Dialer(i int, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		derr := h.Do(i, func() error {
			// An address, not a name: the dial stays in this goroutine.
			c, err = d.DialContext(ctx, network, addr)
			return nil
		})
		return c, errors.Join(err, derr)
	}
}

// Listen listens on host i.
func (h *Hosts) Listen(i int, network, addr string) (ln net.Listener, err error) {
	derr := h.Do(i, func() error { ln, err = net.Listen(network, addr); return nil })
	return ln, errors.Join(err, derr)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
