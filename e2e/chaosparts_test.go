package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// What TestChaos keeps running through its disruptions: a stream of job
// submissions, a Jupyter kernel counting in a thread, tmux in an SSH
// session.

// chaosKernel is a Jupyter kernel whose thread adds one to a counter
// every 100 ms; each read checks that it is the same kernel, still
// counting from where it was.
type chaosKernel struct {
	ws, token, user string
	mark            string // a value set in the kernel at the start
	pid             string
	last            int64
	reads, kept     int
}

const kernelCounter = `
import os, threading, time
chaos_n = 0
chaos_mark = %q
def chaos_count():
    global chaos_n
    while True:
        chaos_n += 1
        time.sleep(0.1)
threading.Thread(target=chaos_count, daemon=True).start()
time.sleep(0.3)
print(chaos_n, chaos_mark, os.getpid())
`

// startChaosKernel starts the user's Jupyter server, a kernel in it and
// the kernel's counting thread.
func startChaosKernel(t *testing.T, up *upProc, user *dspool.User, token, mark string) *chaosKernel {
	t.Helper()
	var nb dspool.Notebook
	cliJSON(t, up.userEnv(token), &nb, "notebook", "start", "--wait")
	if nb.State != dspool.NotebookReady {
		t.Fatalf("notebook start --wait: %+v", nb)
	}
	var kernel struct{ ID string }
	if err := up.api(token).Do(context.Background(), "POST", strings.TrimPrefix(nb.URL, up.URL)+"api/kernels",
		map[string]string{"name": "python3"}, &kernel); err != nil || kernel.ID == "" {
		t.Fatalf("start a kernel: %v (id %q)", err, kernel.ID)
	}
	k := &chaosKernel{ws: "ws" + strings.TrimPrefix(nb.URL, "http") + "api/kernels/" + kernel.ID + "/channels",
		token: token, user: user.Name, mark: mark}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := runInKernel(ctx, t, nil, k.ws, token, user.Name, fmt.Sprintf(kernelCounter, mark))
	n, m, pid, err := parseCount(out)
	if err != nil || m != mark {
		t.Fatalf("the kernel's counter: %q (%v), want a count, %s and a pid", out, err, mark)
	}
	k.last, k.pid = n, pid
	return k
}

func parseCount(out string) (n int64, mark, pid string, err error) {
	f := strings.Fields(out)
	if len(f) != 3 {
		return 0, "", "", fmt.Errorf("%q: want three words", out)
	}
	n, err = strconv.ParseInt(f[0], 10, 64)
	return n, f[1], f[2], err
}

// check reads the counter, waiting up to a minute for the kernel to be
// reachable again, and reports what is wrong (nothing: "").
func (k *chaosKernel) check(t *testing.T) string {
	t.Helper()
	k.reads++
	var out string
	var err error
	if !poll(time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err = execInKernel(ctx, nil, k.ws, k.token, k.user, "print(chaos_n, chaos_mark, os.getpid())")
		return err == nil
	}) {
		return fmt.Sprintf("the kernel did not answer within a minute: %v", err)
	}
	n, mark, pid, perr := parseCount(out)
	switch {
	case perr != nil:
		return fmt.Sprintf("the kernel printed %v", perr)
	case mark != k.mark || pid != k.pid:
		return fmt.Sprintf("the kernel has mark %q in pid %s, want %q in pid %s: it is not the same kernel", mark, pid, k.mark, k.pid)
	case n <= k.last:
		return fmt.Sprintf("the kernel's counter is %d, was %d: it went back or stopped", n, k.last)
	}
	k.last = n
	k.kept++
	return ""
}

// chaosTmux is an SSH session, held by a connection of the real ssh
// client, in which tmux runs a loop that appends the time to a file in
// the user's home every 200 ms.
type chaosTmux struct {
	user    *sshUser
	session string // its id
	file    string // the loop's file, on the share
}

func startChaosTmux(t *testing.T, up *upProc, user *sshUser) *chaosTmux {
	t.Helper()
	_, first, errs := user.sshLongRunning(t, `tmux new -d -s chaos 'while :; do date +%s.%N >> ~/chaos-tmux; sleep 0.2; done' && echo $DSPOOL_SESSION && exec sleep 3600`)
	if !strings.HasPrefix(first, "s-") {
		t.Fatalf("ssh printed %q, want its session's id (stderr %q)", first, errs.String())
	}
	return &chaosTmux{user: user, session: first, file: filepath.Join(up.Share, "home", user.Name, "chaos-tmux")}
}

// relogin opens a new connection, which must land in the same session:
// after a restart of the control plane it takes over the hold that stands
// for the connections the restart dropped.
func (s *chaosTmux) relogin(t *testing.T) string {
	t.Helper()
	var got string
	var errs *syncBuffer
	if !poll(time.Minute, func() bool {
		_, got, errs = s.user.sshLongRunning(t, "echo $DSPOOL_SESSION && exec sleep 3600")
		return got != ""
	}) {
		return fmt.Sprintf("no login within a minute: %s", errs.String())
	}
	if got != s.session {
		return fmt.Sprintf("the next login landed in session %q, want %q", got, s.session)
	}
	return ""
}

// check reports whether the loop wrote the time after since (nothing
// wrong: "").
func (s *chaosTmux) check(since time.Time) string {
	var last float64
	if poll(15*time.Second, func() bool {
		b, _ := os.ReadFile(s.file)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		last, _ = strconv.ParseFloat(lines[len(lines)-1], 64)
		return last > float64(since.UnixNano())/1e9
	}) {
		return ""
	}
	return fmt.Sprintf("tmux's loop last wrote at %.1f, not since %s", last, since.Format(time.RFC3339Nano))
}

// submitter submits jobs, one after another at random intervals, each
// with its own idempotency key, retrying it while the control plane is
// away, until stopped.
type submitter struct {
	cl    *api.Client
	pools []string
	rng   *rand.Rand
	tag   string

	mu    sync.Mutex
	keys  int           // submissions begun
	acked map[int]int64 // submission -> its job, as the API answered
	errs  []string      // submissions never acknowledged
}

// chaosJob appends a start line, a tick every 200 ms and an end line to
// markers in its directory on the share, each with its attempt's number,
// node and shell pid, and the time.
func chaosJob(secs int) []string {
	return []string{"bash", "-c", `me="$DSPOOL_ATTEMPT $DSPOOL_NODE $$"
echo "start $me $EPOCHREALTIME" >> markers
for ((i = 0; i < ` + strconv.Itoa(5*secs) + `; i++)); do sleep 0.2; echo "tick $me $EPOCHREALTIME" >> markers; done
echo "end $me $EPOCHREALTIME" >> markers`}
}

func (s *submitter) run(ctx context.Context, every time.Duration) {
	for ctx.Err() == nil {
		s.mu.Lock()
		i := s.keys
		s.keys++
		s.mu.Unlock()
		spec := &dspool.JobSpec{Name: fmt.Sprintf("chaos-%d", i), Pool: s.pools[s.rng.IntN(len(s.pools))],
			CPUs: 100, Memory: 32 << 20, Retries: 20, Command: chaosJob(1 + s.rng.IntN(5)),
			IdempotencyKey: fmt.Sprintf("%s-%d", s.tag, i)}
		// A minute covers any restart; past it the submission counts as
		// never acknowledged.
		j, err := s.cl.SubmitJob(context.Background(), spec, time.Minute)
		s.mu.Lock()
		if err != nil {
			s.errs = append(s.errs, fmt.Sprintf("%s: %v", spec.Name, err))
		} else {
			s.acked[i] = j.ID
		}
		s.mu.Unlock()
		wait := time.NewTimer(time.Duration(s.rng.Int64N(int64(2 * every))))
		select {
		case <-ctx.Done():
		case <-wait.C:
		}
		wait.Stop()
	}
}

func newSubmitter(up *upProc, token, tag string, seed uint64, pools ...string) *submitter {
	return &submitter{cl: &api.Client{Server: up.URL, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}},
		pools: pools, rng: rand.New(rand.NewPCG(seed, 1)), tag: tag, acked: map[int]int64{}}
}
