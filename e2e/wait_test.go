package e2e_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSubmitWaitFollows: `job submit --wait` shows the job's output as it
// is written (the job waits for the test to see its first line), every
// attempt's in turn, and ends with how the job ended on stderr and the
// job's exit code as its own: a failure's exit code, an out-of-memory kill
// and a time limit each say which.
func TestSubmitWaitFollows(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(75)})
	_, tok := up.createUser(t, "e2ewait75")
	env := up.userEnv(tok)
	dir := tempDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(dir, "go-on")

	// Streaming: the job prints a line, then waits for a file the test
	// makes only once that line has come through.
	cmd := exec.Command(bin, "job", "submit", "--wait", "--", "sh", "-c",
		"echo first; while [ ! -e "+gate+" ]; do sleep 0.1; done; echo second")
	cmd.Env = append(baseEnv(), env...)
	stdout, _ := cmd.StdoutPipe()
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "first" {
			t.Fatalf("the first line of output: %q", l)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no output of the running job in 30 s (stderr %q)", errb.String())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if l := <-lines; l != "second" {
		t.Fatalf("the second line: %q", l)
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(errb.String(), "succeeded") {
		t.Fatalf("submit --wait of a job that succeeded: %v, stderr %q", err, errb.String())
	}

	// A rerun: a new job with the same command and options.
	out, errs, code := cli(t, env, "job", "submit", "--wait", "--env", "WORD=again", "--", "sh", "-c", "echo $WORD")
	if out != "again\n" || code != 0 {
		t.Fatalf("submit --wait: %q, exit %d, stderr %q", out, code, errs)
	}
	first := strings.Fields(errs)[2] // "submitted job N"
	out, errs, code = cli(t, env, "job", "rerun", "--wait", first)
	if out != "again\n" || code != 0 || !strings.Contains(errs, "a rerun of job "+first) {
		t.Errorf("job rerun --wait %s: %q, exit %d, stderr %q; want the same output from a new job", first, out, code, errs)
	}
	if _, errs, code := cli(t, up.env(), "job", "rerun", first); code == 0 || !strings.Contains(errs, "is e2ewait75's") {
		t.Errorf("the admin reruns e2ewait75's job: exit %d, stderr %q; want a refusal saying whose it is", code, errs)
	}

	for _, c := range []struct {
		name   string
		args   []string
		stdout string
		code   int
		says   []string
	}{
		{"a failure, retried", []string{"--retries", "1", "--", "sh", "-c", "echo try $DSPOOL_ATTEMPT; exit 3"},
			"try 1\ntry 2\n", 3, []string{"attempt 1 of job", "exit code 3); attempt 2 runs", "failed after 2 attempts: exit code 3"}},
		{"an out-of-memory kill", []string{"--memory", "50MiB", "--", "python3", "-c", "x = bytearray(300 << 20)"},
			"", 137, []string{"killed for using more than its memory limit of 50MiB"}},
		{"a time limit", []string{"--time", "1s", "--", "sleep", "30"},
			"", 143, []string{"timeout", "time limit of 1s"}},
	} {
		out, errs, code := cli(t, env, append([]string{"job", "submit", "--wait"}, c.args...)...)
		if out != c.stdout || code != c.code {
			t.Errorf("%s: stdout %q, exit %d; want %q and %d (stderr %q)", c.name, out, code, c.stdout, c.code, errs)
		}
		for _, s := range c.says {
			if !strings.Contains(errs, s) {
				t.Errorf("%s: stderr %q does not say %q", c.name, errs, s)
			}
		}
	}
}
