package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// helpOrder is the order the help pages' examples run in, by golden file
// (cli/testdata/help/NAME.txt): each page's examples in their own order, and
// an example that an earlier page showed already is not run again. Later
// pages use what earlier ones made: users alice and bob, team vision, pool
// highmem, jobs 1 to 14. Every help page is in it.
var helpOrder = []string{
	"dspool_version",
	"dspool_user_create", "dspool_user", "dspool_user_list", "dspool_user_passwd", "dspool_user_email", "dspool_user_limits",
	"dspool_team_create", "dspool_team_add", "dspool_team", "dspool_team_limits", "dspool_team_list", "dspool_team_show",
	"dspool_key_add", "dspool_key_list", "dspool_key", "dspool_key_remove",
	// Join tokens of pool default before pool highmem's nodes join with
	// their own.
	"dspool_pool_join-token",
	"dspool_pool_apply", "dspool_pool", "dspool_pool_list", "dspool_pool_show", "dspool_pool_events",
	// A Jupyter server in pool default while its node is free, then one in
	// pool highmem, on highmem-2 while highmem-1 is drained, which stays
	// until that node goes.
	"dspool_node_list", "dspool_node_show", "dspool_node_drain",
	"dspool_notebook", "dspool_notebook_start", "dspool_notebook_status", "dspool_notebook_stop",
	"dspool_node_undrain",
	// Jobs 1 to 8: two quick ones, a training job (3), its evaluation
	// after it (4), a sweep of learning rates: an array of four tasks (5 to 8),
	// two of which diverge.
	"dspool_job_submit", "dspool_job_hold", "dspool_job_priority", "dspool_job_release",
	"dspool", "dspool_job", "dspool_job_list", "dspool_job_show", "dspool_job_logs", "dspool_job_wait",
	// Jobs 9 and 10 are quick ones. Then 11 to 14: the evaluation and the
	// training again, and the sweep's diverged tasks again (an array of two
	// tasks, 13 and 14); then the end of 12, 13 and 14.
	"dspool_job_rerun", "dspool_job_cancel",
	"dspool_secret_set", "dspool_secret", "dspool_secret_list",
	// Schedules make jobs as their slots come: after every example that
	// names a job by its id.
	"dspool_schedule_create", "dspool_schedule_list", "dspool_schedule_show", "dspool_schedule",
	"dspool_schedule_pause", "dspool_schedule_resume", "dspool_schedule_delete",
	"dspool_session", "dspool_session_list", "dspool_session_show", "dspool_session_kill", "dspool_shell",
	"dspool_token_create", "dspool_token", "dspool_token_list", "dspool_token_revoke",
	"dspool_usage", "dspool_queue", "dspool_share", "dspool_audit", "dspool_simulate",
	// What takes things away last.
	"dspool_secret_delete", "dspool_secret_rotate-key",
	"dspool_team_remove", "dspool_team_delete",
	"dspool_user_disable", "dspool_user_enable",
	"dspool_node_revoke", "dspool_node", "dspool_node_remove", "dspool_pool_delete",
	// Only exceptions.
	"dspool_up", "dspool_server", "dspool_agent", "dspool_gateway", "dspool_login", "dspool_backup", "dspool_restore",
}

// helpNotRun are the examples that cannot run on a fresh `dspool up` on
// this machine, and why: they start a pool or a part of one, act on another
// machine or on files an operator keeps elsewhere, or need an SSH login.
// Any other example that fails fails the test.
var helpNotRun = map[string]string{
	"dspool up": "starts a pool: one is running already",
	"dspool up --nodes 4 --data /tmp/pool --listen 127.0.0.1:9090":                                                                                                            "starts a second pool",
	"dspool server --config /etc/dspool/server.yaml":                                                                                                                          "starts a control plane of its own, from an operator's config file",
	"dspool agent --server https://pool.example:8080 --join-token $(dspool pool join-token default) --share /mnt/dspool":                                                      "runs on another machine, joining a pool there with the share mounted",
	"dspool agent --server https://10.0.0.1:8080 --join-token dspj_... --pool gpu --gpus 2 --share /mnt/dspool":                                                               "runs on another machine, with GPUs",
	"dspool agent --server http://HOST:8080 --join-token $(dspool pool join-token default) --share /mnt/dspool":                                                               "runs on another machine (HOST: the pool's)",
	"DSPOOL_SERVER=https://pool.example:8080 DSPOOL_CA=/etc/dspool/ca.pem DSPOOL_TOKEN=dsp_... dspool gateway --listen :22 --agent-listen :7022 --advertise gw1.example:7022": "runs an SSH gateway on another machine, on port 22",
	"dspool login https://pool.example.com:8080 --ca-hash sha256:3f1c...":                                                                                                     "logs in to a pool on another machine",
	"dspool token create --user alice | ssh alice@laptop dspool login https://pool:8080 --ca-hash sha256:3f1c...":                                                             "logs in alice's laptop, over SSH",
	"dspool backup /backups/dspool-$(date +%F).db":                                                                                                                            "writes to an operator's backup directory",
	"dspool backup --data /var/lib/dspool /backups/dspool.db":                                                                                                                 "copies the store of a pool in /var/lib/dspool",
	"dspool restore /backups/dspool.db --data /var/lib/dspool-restored":                                                                                                       "restores a backup kept elsewhere",
	"dspool session kill s-0123456789abcdef":                                                                                                                                  "needs a live SSH session's id, which each login draws at random",
	"dspool session show s-0123456789abcdef -o json":                                                                                                                          "needs a live SSH session's id, which each login draws at random",
	"dspool shell --cpus 8 --memory 64GiB --gpus 1 --time 4h":                                                                                                                 "needs an SSH login through the gateway at its port, and a node with a GPU and 8 cpus",
	"dspool shell --pool gpu --profile large":                                                                                                                                 "needs an SSH login through the gateway at its port, and a pool gpu with a profile large",
	"dspool shell --cpus 2 -- nproc":                                                                                                                                          "needs an SSH login through the gateway at its port (the harness's is not 2222) and a trusted host key",
}

// helpStdin is what a user types at the examples that ask for input on a
// terminal.
var helpStdin = map[string]string{
	"dspool user passwd":            "correct horse battery staple\n",
	"dspool user passwd alice":      "alice's first password\n",
	"dspool secret set db-password": "s3cret-db-password\n",
}

// helpAsAlice are the examples that show a team member's work: they run as
// alice, whom the team examples made a maintainer of vision, with the token
// that the example helpAliceToken printed.
var helpAsAlice = map[string]string{
	"dspool secret set vision/wandb-key < key.txt": "a team's secrets are its members'",
	"dspool secret delete vision/wandb-key":        "a team's secrets are its members'",
}

const helpAliceToken = "dspool token create --user alice"

// helpNeedsJupyter are the examples that start a Jupyter server.
var helpNeedsJupyter = []string{"dspool notebook"}

// TestHelpExamples runs every example of every command's --help, as written,
// on a fresh `dspool up`, in the order of helpOrder, and requires each to
// exit 0 but for those in helpNotRun.
func TestHelpExamples(t *testing.T) {
	requireRoot(t)
	pages := helpExamples(t)
	for name := range pages {
		if !slices.Contains(helpOrder, name) {
			t.Errorf("help page %s is not in helpOrder: put it where its examples can run", name)
		}
	}
	seen := map[string]bool{}
	var order []string
	for _, name := range helpOrder {
		ex, ok := pages[name]
		if !ok {
			t.Errorf("helpOrder names %s, which has no golden help file", name)
		}
		for _, e := range ex {
			if !seen[e] {
				seen[e] = true
				order = append(order, e)
			}
		}
	}
	for _, m := range []map[string]string{helpNotRun, helpStdin, helpAsAlice} {
		for e := range m {
			if !seen[e] {
				t.Errorf("no help shows the example %q any more: take it out of the test's tables", e)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	const admin = "e2ehelp"
	for _, name := range []string{admin, "alice", "bob"} {
		removeAccountAfter(t, name)
	}
	up := startUp(t, upConfig{UIDBase: uidBase(198), Args: []string{"--ssh-listen", "off", "--admin", admin}})
	home, work := helpHome(t, up, admin)
	binDir := filepath.Dir(bin)
	env := append(baseEnv(), up.env()...)
	env = append(env, "PATH="+binDir+":"+os.Getenv("PATH"), "HOME="+home)
	env = append(env, helpSSHAgent(t, home)...)
	jupyter := haveJupyter()

	var aliceEnv []string
	start := time.Now()
	for _, e := range order {
		if why, ok := helpNotRun[e]; ok {
			t.Logf("not run: %s: %s", e, why)
			continue
		}
		if !jupyter && slices.ContainsFunc(helpNeedsJupyter, func(p string) bool { return strings.HasPrefix(e, p) }) {
			t.Logf("not run: %s: %s", e, noJupyter)
			continue
		}
		cmdEnv := env
		if _, ok := helpAsAlice[e]; ok {
			if aliceEnv == nil {
				t.Fatalf("%s runs as alice, but no example before it printed her token (%s)", e, helpAliceToken)
			}
			cmdEnv = aliceEnv
		}
		began := time.Now()
		out, errs, code, err := helpRun(cmdEnv, work, helpStdin[e], e)
		took := time.Since(began).Round(time.Millisecond)
		if e == helpAliceToken && code == 0 {
			aliceEnv = append(slices.Clip(env), up.userEnv(strings.TrimSpace(out))...)
		}
		switch {
		case err != nil:
			t.Errorf("%s: %v after %s\nstdout: %s\nstderr: %s", e, err, took, out, errs)
		case code != 0:
			t.Errorf("%s: exit code %d after %s, want 0\nstdout: %s\nstderr: %s", e, code, took, out, errs)
		default:
			t.Logf("ok (%s): %s\n%s", took, e, helpIndent(out))
		}
	}
	t.Logf("%d examples in %s", len(order), time.Since(start).Round(time.Millisecond))
}

// helpIndent indents what an example printed, cut to its first lines.
func helpIndent(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 8 {
		lines = append(lines[:8], "...")
	}
	return "    " + strings.Join(lines, "\n    ")
}

// helpRun runs one example with sh -c in dir and returns what it printed
// on stdout, then on stderr, and its exit code.
func helpRun(env []string, dir, stdin, example string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", example)
	cmd.Env, cmd.Dir, cmd.Stdin = env, dir, strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out.String(), errb.String(), -1, errors.New("timed out")
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	return out.String(), errb.String(), 0, err
}

// helpExamples reads every golden help file and returns its examples: the
// lines under "Examples:", lines ending in \ joined with the next.
func helpExamples(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "cli", "testdata", "help", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden help files: %v", err)
	}
	pages := map[string][]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ex []string
		in, cont := false, ""
		for _, line := range strings.Split(string(b), "\n") {
			if line == "Examples:" {
				in = true
				continue
			}
			if !in {
				continue
			}
			if !strings.HasPrefix(line, "  ") {
				break
			}
			l := strings.TrimSpace(line)
			if c, ok := strings.CutSuffix(l, `\`); ok {
				cont += c
				continue
			}
			ex = append(ex, cont+l)
			cont = ""
		}
		if len(ex) == 0 {
			t.Errorf("%s has no examples", f)
		}
		pages[strings.TrimSuffix(filepath.Base(f), ".txt")] = ex
	}
	return pages
}

// helpHome makes what the examples take as a data scientist's own: a home
// (the working directory, with HOME) holding their SSH key, a Hugging Face
// token and other credentials, a public key alice sent and a trace of a
// week's work; and, in their home on the share, the project the jobs run.
func helpHome(t *testing.T, up *upProc, admin string) (home, work string) {
	t.Helper()
	home = t.TempDir()
	work = home
	for _, k := range []struct{ typ, file, comment string }{
		{"ed25519", filepath.Join(home, ".ssh", "id_ed25519"), "me@laptop"},
		{"ecdsa", filepath.Join(home, ".ssh", "id_ecdsa"), "me@agent"},
		{"ed25519", filepath.Join(home, "alice"), "alice@laptop"},
	} {
		if err := os.MkdirAll(filepath.Dir(k.file), 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("ssh-keygen", "-q", "-t", k.typ, "-N", "", "-C", k.comment, "-f", k.file).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	files := map[string]string{
		".cache/huggingface/token": "hf_exampleexampleexample\n",
		"key.json":                 `{"type": "service_account", "project_id": "example"}` + "\n",
		"key.txt":                  "sk-example\n",
		"week.csv": "at,kind,pool,user,cpus,memory,gpus,duration\n" +
			"8h,session,highmem,alice,,,,3h\n" +
			"9h,job,highmem,bob,1,2GiB,,45m\n" +
			"20h,job,highmem,alice,1,1GiB,,2h\n",
	}
	for name, content := range files {
		p := filepath.Join(home, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The project, in the admin's home on the share: a training script
	// that takes a second an epoch and diverges at a learning rate of 0.1
	// or more, and an evaluation of what it saved.
	var me dspool.User
	for _, u := range func() []dspool.User {
		var us []dspool.User
		cliJSON(t, up.env(), &us, "user", "list")
		return us
	}() {
		if u.Name == admin {
			me = u
		}
	}
	if me.UID == 0 {
		t.Fatalf("no user %s", admin)
	}
	project := filepath.Join(up.Share, "home", admin, "project")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"train.py": `import argparse, sys, time
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--lr", type=float, default=0.01)
a = p.parse_args()
loss = 1.0
for epoch in range(1, a.epochs + 1):
    time.sleep(1)
    loss = loss * (1 - a.lr) if a.lr < 0.1 else loss * 3
    print(f"epoch {epoch}: loss {loss:.4f}", flush=True)
    if loss > 20:
        sys.exit(f"loss diverged at lr {a.lr}")
with open(f"model-lr{a.lr}.txt", "w") as f:
    f.write(f"{loss}\n")
`,
		"evaluate.py": `import glob
for m in sorted(glob.glob("model-*.txt")):
    print(m, open(m).read().strip())
`,
	} {
		if err := os.WriteFile(filepath.Join(project, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(up.Share, "home", admin)
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Lchown(p, me.UID, me.GID)
		}
		return err
	})
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return home, work
}

// helpSSHAgent starts an ssh-agent holding ~/.ssh/id_ecdsa, as a user's
// login has, and returns its variables.
func helpSSHAgent(t *testing.T, home string) []string {
	t.Helper()
	sock := filepath.Join(home, ".ssh", "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	env := []string{"SSH_AUTH_SOCK=" + sock}
	eventually(t, 10*time.Second, "ssh-agent to listen", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	add := exec.Command("ssh-add", "-q", filepath.Join(home, ".ssh", "id_ecdsa"))
	add.Env = append(os.Environ(), env...)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	return env
}
