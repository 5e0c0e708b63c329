package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// What TestChaos checks once its disruptions are over.

// drainAndCheck waits for every job to end and checks what TestChaos
// promises; it prints the counts.
func (c *chaos) drainAndCheck(began time.Time) {
	t := c.t
	ctx := context.Background()
	admin := c.up.api(c.admin)
	var jobs map[int64]*dspool.Job
	var pending int
	if !poll(3*time.Minute, func() bool {
		jobs, pending = listJobs(t, ctx, admin), 0
		for _, j := range jobs {
			if !j.State.Terminal() {
				pending++
			}
		}
		return pending == 0
	}) {
		t.Errorf("%d jobs have not ended 3 minutes after the last disruption", pending)
	}

	s := c.jobs
	s.mu.Lock()
	defer s.mu.Unlock()
	n := c.checkJobs(jobs)
	orphans := c.checkOrphans()
	for _, p := range c.panics() {
		t.Errorf("a panic in a log: %s", p)
	}
	if c.tmux != nil {
		out, errs, code := c.tmux.user.ssh(t, c.tmux.user.Name, nil, "tmux has-session -t chaos && echo $DSPOOL_SESSION")
		if got := strings.TrimSpace(out); code != 0 || got != c.tmux.session {
			t.Errorf("tmux after the disruptions: exit %d, session %q (stderr %q); want tmux running in session %s", code, got, errs, c.tmux.session)
		}
	}
	kernel := "no kernel (Jupyter is not installed)"
	if c.kernel != nil {
		kernel = fmt.Sprintf("kernel kept %d/%d", c.kernel.kept, c.kernel.reads)
	}
	t.Logf("chaos: %d submissions, %d acknowledged, %d never; %d jobs retried (a killed agent or a long cut), %d of them after an attempt that ran to its end on a node then lost; %d processes of dspool users seen at the end; %s in all",
		s.keys, len(s.acked), len(s.errs), n.retried, n.rerun, c.procsSeen, time.Since(began).Round(time.Second))
	t.Logf("chaos: seed %d, %d control plane kills, %d agent kills, %d link cuts, %d jobs: %d lost, %d run twice, %d concurrent duplicates, %d retried without a disruption of their node, %d orphans, %s",
		c.seed, c.done["up"], c.done["agent"], c.done["cut"], len(s.acked), n.lost, n.twice, n.concurrent, n.otherRetry, orphans, kernel)
}

// jobCounts are what checkJobs found.
type jobCounts struct {
	lost       int // acknowledged, and not succeeded after a run to the end
	twice      int // two jobs for one submission, an attempt run twice or unknown to the server
	otherRetry int // retried after an attempt not lost with its node while a disruption of it was under way
	concurrent int // two attempts of a job ran at once
	retried    int // (no fault) run at more than one attempt
	rerun      int // (no fault) run to the end again after an attempt lost with its node
}

// checkJobs checks each submission's job against the server's list and
// its markers. c.jobs is locked.
func (c *chaos) checkJobs(jobs map[int64]*dspool.Job) jobCounts {
	t := c.t
	s := c.jobs
	nodes, err := c.up.api(c.admin).NodesWithGone(context.Background(), "")
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	names := map[string]string{}
	for _, nd := range nodes {
		names[nd.ID] = nd.Name
	}
	for _, e := range s.errs {
		t.Logf("chaos: a submission never acknowledged: %s", e)
	}
	// Each submission's key is in its job's name: one job per key.
	byName := map[string][]int64{}
	for _, j := range jobs {
		byName[j.Name] = append(byName[j.Name], j.ID)
	}
	var n jobCounts
	for i := range s.keys {
		name := fmt.Sprintf("chaos-%d", i)
		if ids := byName[name]; len(ids) > 1 {
			t.Errorf("submission %s made jobs %v, want one", name, ids)
			n.twice++
		}
		id, ok := s.acked[i]
		if !ok {
			continue
		}
		j := jobs[id]
		if j == nil || j.Name != name {
			t.Errorf("job %d, acknowledged for %s, is not in the server's list", id, name)
			n.lost++
			continue
		}
		runs, err := readMarkers(filepath.Join(c.up.Share, "jobs", itoa(id), "markers"))
		if err != nil {
			t.Errorf("job %d: %v", id, err)
		}
		if j.State != dspool.JobSucceeded || !finished(runs, j.Attempt) {
			t.Errorf("job %d: state %s at attempt %d (reason %q, %q); want succeeded, its last attempt run to its end\n%s",
				id, j.State, j.Attempt, j.Reason, j.Message, describeRuns(runs))
			n.lost++
		}
		if len(runs) > attempts(runs) {
			t.Errorf("job %d: an attempt ran twice (%d runs of %d attempts):\n%s", id, len(runs), attempts(runs), describeRuns(runs))
			n.twice++
		} else if r := slices.IndexFunc(runs, func(r *jobRun) bool { return r.attempt > j.Attempt }); r >= 0 {
			t.Errorf("job %d: attempt %d ran, and the server knows %d:\n%s", id, runs[r].attempt, j.Attempt, describeRuns(runs))
			n.twice++
		} else if ends(runs) > 1 {
			// An attempt that ended while its node was cut off, or just
			// before its agent died, is lost with its node all the same
			// (checked below): the server cannot know, and runs the job
			// again.
			n.rerun++
		}
		if a, b, ok := overlap(runs); ok {
			t.Errorf("job %d: %s ran while %s did:\n%s", id, a, b, describeRuns(runs))
			n.concurrent++
		}
		if j.Attempt > 1 {
			n.retried++
			if bad := c.lostAttempts(id, j.Attempt, names); bad != "" {
				t.Errorf("job %d was retried, but not for a lost node: %s\n%s", id, bad, describeRuns(runs))
				n.otherRetry++
			}
		}
	}
	if len(s.acked) == 0 {
		t.Errorf("no submission was acknowledged")
	}
	return n
}

// stopAndCheck stops `dspool up` as Ctrl-C does: every local agent it
// started or adopted stops, and the work of the users ends with them.
func (c *chaos) stopAndCheck() {
	t := c.t
	c.up.Stop()
	for _, s := range c.local {
		if pids := agentPIDs(s); len(pids) > 0 {
			t.Errorf("agents %v of %s run on after dspool up stopped: it had not adopted them", pids, filepath.Base(s))
		}
	}
	var left []int
	if !poll(10*time.Second, func() bool {
		left = left[:0]
		for _, uid := range c.users {
			left = append(left, procsMatching(uid, func([]string) bool { return true })...)
		}
		return len(left) == 0
	}) {
		t.Errorf("processes %v of the users run on 10s after dspool up stopped with its agents", left)
	}
}

// lostAttempts says which attempt of a job, but its last, did not end
// with its node lost while a disruption of that node was under way ("":
// none): a kill -9 of the control plane costs no attempt, a killed agent or
// a cut link only those of its node. names maps node ids to names.
func (c *chaos) lostAttempts(id int64, last int, names map[string]string) string {
	j, err := c.up.api(c.admin).Job(context.Background(), id)
	if err != nil {
		return fmt.Sprintf("its attempts: %v", err)
	}
	if len(j.Attempts) != last {
		return fmt.Sprintf("the server lists %d attempts, and the job is at attempt %d", len(j.Attempts), last)
	}
	for _, a := range j.Attempts {
		if a.Number == last {
			continue
		}
		if a.Reason != dspool.ReasonNodeLost {
			return fmt.Sprintf("attempt %d on node %s ended %q (exit code %s: %s)", a.Number, names[a.Node], a.Reason, exitCodeOf(a.ExitCode), a.Message)
		}
		if !slices.ContainsFunc(c.hits[names[a.Node]], func(hit time.Time) bool { return during(hit, a) }) {
			return fmt.Sprintf("attempt %d on node %s (%s to %s) ended %q (%s), and nothing disrupted its node meanwhile",
				a.Number, names[a.Node], stamp(a.StartedAt), stamp(a.FinishedAt), a.Reason, a.Message)
		}
	}
	return ""
}

// during reports whether a disruption that began at hit can have ended
// attempt a: it began before a ended, and after a started (a minute before
// it ended, when it never started).
func during(hit time.Time, a dspool.Attempt) bool {
	if a.FinishedAt == nil || hit.After(*a.FinishedAt) {
		return false
	}
	if a.StartedAt != nil {
		return !hit.Before(a.StartedAt.Add(-time.Second))
	}
	return hit.After(a.FinishedAt.Add(-time.Minute))
}

func stamp(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format("15:04:05.000")
}

func exitCodeOf(code *int) string {
	if code == nil {
		return "none"
	}
	return strconv.Itoa(*code)
}

// jobRun is what one execution of a chaos job wrote to its markers.
type jobRun struct {
	attempt     int
	node, pid   string
	first, last float64 // times of its first and last lines
	ended       bool
}

func (r *jobRun) String() string {
	return fmt.Sprintf("attempt %d (node %s, pid %s) from %.3f to %.3f, ended %v", r.attempt, r.node, r.pid, r.first, r.last, r.ended)
}

// readMarkers reads the runs of a chaos job from its markers: lines
// "start|tick|end ATTEMPT NODE PID TIME".
func readMarkers(path string) ([]*jobRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []*jobRun
	byKey := map[string]*jobRun{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) != 5 {
			return runs, fmt.Errorf("%s: line %q", path, sc.Text())
		}
		attempt, err1 := strconv.Atoi(w[1])
		at, err2 := strconv.ParseFloat(w[4], 64)
		if err1 != nil || err2 != nil {
			return runs, fmt.Errorf("%s: line %q", path, sc.Text())
		}
		key := strings.Join(w[1:4], " ")
		r := byKey[key]
		if r == nil {
			r = &jobRun{attempt: attempt, node: w[2], pid: w[3], first: at}
			byKey[key] = r
			runs = append(runs, r)
		}
		r.first, r.last = min(r.first, at), max(r.last, at)
		r.ended = r.ended || w[0] == "end"
	}
	return runs, sc.Err()
}

// finished reports whether attempt ran to its end.
func finished(runs []*jobRun, attempt int) bool {
	for _, r := range runs {
		if r.attempt == attempt && r.ended {
			return true
		}
	}
	return false
}

func ends(runs []*jobRun) int {
	n := 0
	for _, r := range runs {
		if r.ended {
			n++
		}
	}
	return n
}

// attempts counts the attempt numbers that ran.
func attempts(runs []*jobRun) int {
	seen := map[int]bool{}
	for _, r := range runs {
		seen[r.attempt] = true
	}
	return len(seen)
}

// overlap returns two runs of which each wrote a line while the other ran.
func overlap(runs []*jobRun) (*jobRun, *jobRun, bool) {
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.first <= b.last && b.first <= a.last {
				return a, b, true
			}
		}
	}
	return nil, nil, false
}

func describeRuns(runs []*jobRun) string {
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	return b.String()
}

// checkOrphans fails the test for each orphan, once it has seen the check
// find one it made; it returns how many there were.
func (c *chaos) checkOrphans() int {
	t := c.t
	// The check finds a process of a user that no work of theirs holds.
	decoy := exec.Command("sleep", "61")
	decoy.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.users[0]), Gid: uint32(c.users[0])}}
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	found := c.orphans(0)
	_ = decoy.Process.Kill()
	_ = decoy.Wait()
	if len(found) != 1 || !strings.Contains(found[0], fmt.Sprintf("pid %d ", decoy.Process.Pid)) {
		t.Errorf("with a stray sleep (pid %d) of uid %d, the orphan check found %q; want it alone", decoy.Process.Pid, c.users[0], found)
	}
	orphans := c.orphans(10 * time.Second)
	for _, o := range orphans {
		t.Errorf("orphan: %s", o)
	}
	return len(orphans)
}

// orphans lists the processes of the dspool users that belong to no
// running attempt and no active session the control plane lists, waiting
// up to patience for processes on their way out.
func (c *chaos) orphans(patience time.Duration) []string {
	t := c.t
	ctx := context.Background()
	admin := c.up.api(c.admin)
	var out []string
	poll(patience, func() bool {
		live := map[string]bool{}
		for _, j := range listJobs(t, ctx, admin) {
			if j.State == dspool.JobRunning {
				live[fmt.Sprintf("%s/j%d-a%d", j.Node, j.ID, j.Attempt)] = true
			}
		}
		sessions, err := admin.Sessions(ctx, true, false)
		if err != nil {
			t.Fatalf("list sessions: %v", err)
		}
		for _, s := range sessions {
			if s.State != dspool.SessionEnded {
				live[s.Node+"/"+s.ID] = true
			}
		}
		out, c.procsSeen = out[:0], 0
		for _, uid := range c.users {
			for _, pid := range procsMatching(uid, func([]string) bool { return true }) {
				c.procsSeen++
				where := workOf(pid)
				// Read after its cgroup: a process that has exited
				// meanwhile (a zombie shows the root cgroups) is no orphan.
				args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if len(args) > 0 && !live[where] {
					out = append(out, fmt.Sprintf("pid %d of uid %d in cgroup %q: %q", pid, uid, where, strings.ReplaceAll(string(args), "\x00", " ")))
				}
			}
		}
		return len(out) == 0
	})
	sort.Strings(out)
	return out
}

// workOf returns "NODE/WORK", the attempt's or session's cgroup that pid
// is in, or its cgroup when that is no node's.
func workOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, "/dspool/"); ok && strings.Count(rest, "/") == 1 {
			return rest
		}
	}
	return strings.TrimSpace(string(b))
}

// TestChaosMarkers: the checks of TestChaos tell overlapping attempts, a
// second run of one attempt and a second run to the end from markers.
func TestChaosMarkers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		markers string
		overlap bool
		runs    int
		tries   int // attempt numbers
		ends    int
	}{
		{"one run", "start 1 n1 7 10.0\ntick 1 n1 7 10.2\nend 1 n1 7 10.4\n", false, 1, 1, 1},
		{"a retry after its attempt died", "start 1 n1 7 10.0\ntick 1 n1 7 10.2\nstart 2 n2 9 11.0\nend 2 n2 9 12.0\n", false, 2, 2, 1},
		{"a stale attempt ticking beside its retry", "start 1 n1 7 10.0\nstart 2 n2 9 11.0\ntick 1 n1 7 11.2\nend 2 n2 9 12.0\n", true, 2, 2, 1},
		{"an attempt started twice", "start 1 n1 7 10.0\nend 1 n1 7 10.4\nstart 1 n1 8 11.0\nend 1 n1 8 11.4\n", false, 2, 1, 2},
		{"two runs to the end", "start 1 n1 7 10.0\nend 1 n1 7 10.4\nstart 2 n1 8 11.0\nend 2 n1 8 11.4\n", false, 2, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs, err := readMarkers(writeFile(t, "markers-*", tc.markers))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, got := overlap(runs); got != tc.overlap {
				t.Errorf("overlap: got %v, want %v\n%s", got, tc.overlap, describeRuns(runs))
			}
			if len(runs) != tc.runs || attempts(runs) != tc.tries || ends(runs) != tc.ends {
				t.Errorf("got %d runs of %d attempts, %d to the end; want %d, %d, %d\n%s",
					len(runs), attempts(runs), ends(runs), tc.runs, tc.tries, tc.ends, describeRuns(runs))
			}
		})
	}
	if _, err := readMarkers(writeFile(t, "markers-*", "start 1 n1\n")); err == nil {
		t.Errorf("a cut line read without an error")
	}
}
