package e2e_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestDashboard: headless Chromium uses the dashboard of a real `dspool
// up`, as a user and as an admin. The user opens a job's page from a link
// before logging in and lands back on it, follows its log while it prints,
// finds their SSH command at home, cancels another job, reads why a third
// waits, sees the node an autoscaled pool added count down to its removal,
// and reads the usage chart; the pages fit a phone's width, every field has
// a label, and the keyboard's first stop skips the menu. The admin logs in
// from a link to the audit log and finds the user's login there, and the
// user in the list of users. Screenshots of each page are kept (in
// $DSPOOL_ARTIFACTS when set).
func TestDashboard(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{UIDBase: uidBase(200)})
	u, tok := up.createUser(t, "e2edash200")
	const pw = "correct horse battery"
	cmdIn(t, up.userEnv(tok), pw+"\n", "user", "passwd")
	cmdIn(t, up.env(), "admin horse battery\n", "user", "passwd")
	env := up.userEnv(tok)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	admin, err := up.api(up.adminToken(t)).WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A pool with no machine, whose jobs wait and say why, and one that
	// autoscales from zero.
	cliOK(t, up.env(), "pool", "apply", "-f", writeFile(t, "pools-*.yaml", `pools:
- name: hold
  provider: static
  node: {cpus: 1, memory: 1GiB}
- name: burst
  node: {cpus: 1, memory: 1GiB}
  autoscale: {min: 0, max: 1, idle_timeout: 10m}
`))
	burst := submit(t, env, "--name", "burst", "--pool", "burst", "--cpus", "0.1", "--", "true")
	printer := submit(t, env, "--name", "printer", "--cpus", "0.1", "--", "sh", "-c", "sleep 3; for i in $(seq 1 30); do echo line $i; sleep 0.2; done")
	sleeper := submit(t, env, "--name", "sleeper", "--cpus", "0.1", "--", "sleep", "600")
	waiter := submit(t, env, "--name", "waiter", "--pool", "hold", "--cpus", "0.1", "--", "true")

	dir := tempDir(t)
	p := startChromium(t, ctx, dir)
	logIn := func(name, password string) {
		p.waitFor(ctx, "the login form", `!!document.getElementById("password")`)
		p.eval(ctx, fmt.Sprintf(`document.getElementById("username").value = %s; document.getElementById("password").value = %s; document.querySelector('form[action="/login"]').submit(); true`,
			jsString(name), jsString(password)))
	}
	// Every field of a page has a label, and the page fits width.
	usable := func(page string, width int) {
		t.Helper()
		if got := p.eval(ctx, `[...document.querySelectorAll('input:not([type=hidden]), select')].filter(e => e.labels.length === 0).map(e => e.name || e.id)`); got != "[]" {
			t.Errorf("%s: fields without a label: %s", page, got)
		}
		if got, _ := strconv.Atoi(p.eval(ctx, `document.documentElement.scrollWidth`)); got > width {
			t.Errorf("%s: the page is %d px wide in a %d px window", page, got, width)
		}
	}

	// A deep link, before logging in, comes back after the login.
	deep := up.URL + "/jobs/" + itoa(printer)
	p.call(ctx, "Page.navigate", map[string]any{"url": deep})
	logIn(u.Name, pw)
	p.waitFor(ctx, "the job's page after the login", `location.href === `+jsString(deep)+` && !!document.getElementById("log")`)

	// The log grows on the page while the job prints.
	p.waitFor(ctx, "the first lines in the log", `document.getElementById("log").textContent.includes("line 3\n")`)
	if j := job(t, env, printer); j.State != dspool.JobRunning {
		t.Errorf("the log showed its first lines with the job %s, want running (followed live)", j.State)
	}
	if got := p.eval(ctx, `document.getElementById("log").textContent.includes("line 30")`); got != "false" {
		t.Errorf("the whole log was there with the first lines: the page did not follow it")
	}
	p.waitFor(ctx, "the whole log, and the page to say the attempt ended", `document.getElementById("log").textContent.includes("line 30\n") && document.getElementById("log").dataset.done === "true"`)
	p.waitFor(ctx, "the job's state to show succeeded", `document.getElementById("state").textContent === "succeeded"`)
	usable("the job's page", 1280)
	p.screenshot(ctx, dir, "dashboard-job-log.png")

	// Home: the Jupyter server's controls and the SSH command.
	p.navigate(ctx, up.URL+"/")
	wantSSH := "ssh -p " + up.SSHPort + " " + u.Name + "@127.0.0.1"
	if got := p.eval(ctx, `document.getElementById("ssh").textContent.trim()`); got != jsString(wantSSH) {
		t.Errorf("the home page's SSH command: %s, want %q", got, wantSSH)
	}
	p.waitFor(ctx, "the notebook's state", `document.getElementById("state").textContent === "stopped" && !document.getElementById("start").disabled`)
	usable("the home page", 1280)
	p.screenshot(ctx, dir, "dashboard-home.png")

	// Cancel a job with its button.
	p.navigate(ctx, up.URL+"/jobs/"+itoa(sleeper))
	p.waitFor(ctx, "the cancel button", `!!document.getElementById("cancel")`)
	p.eval(ctx, `document.getElementById("cancel").click(); true`)
	p.waitFor(ctx, "the page to show the job cancelled", `document.getElementById("state") && document.getElementById("state").textContent === "cancelled"`)
	if j := job(t, env, sleeper); j.State != dspool.JobCancelled {
		t.Errorf("after the cancel button the job is %s, want cancelled", j.State)
	}
	p.screenshot(ctx, dir, "dashboard-job-cancelled.png")

	// The queue says why the waiting job waits, as `dspool queue` does.
	w := job(t, env, waiter)
	if w.State != dspool.JobQueued {
		t.Fatalf("the job in the pool without machines is %s, want queued", w.State)
	}
	var q dspool.Queue
	cliJSON(t, env, &q, "queue", "--pool", "hold")
	if len(q.Jobs) != 1 || q.Jobs[0].ID != waiter {
		t.Fatalf("dspool queue --pool hold: %+v, want job %d alone", q.Jobs, waiter)
	}
	want := q.Jobs[0].Reason + ": " + q.Jobs[0].Detail
	p.navigate(ctx, up.URL+"/queue")
	why := p.eval(ctx, `document.querySelector('tr[data-job="`+itoa(waiter)+`"] .why').textContent`)
	if !strings.Contains(why, want) {
		t.Errorf("the queue says the job waits because %s, want %q", why, want)
	}
	p.screenshot(ctx, dir, "dashboard-queue.png")

	// The autoscaled pool's node came for the job, and counts down to its
	// removal now that it is idle.
	waitState(t, env, burst, dspool.JobSucceeded, time.Minute)
	p.navigate(ctx, up.URL+"/pools/burst")
	p.waitFor(ctx, "the idle node's countdown", `[...document.querySelectorAll("tr[data-node] .idle")].some(c => /idle for .*: removed in \d+m\d+s unless work arrives/.test(c.textContent))`)
	if got := p.eval(ctx, `[...document.querySelectorAll("#events tbody tr")].some(r => r.textContent.includes("scale_out") && r.textContent.includes("queued job"))`); got != "true" {
		t.Errorf("the pool's events do not say why its node came")
	}
	p.screenshot(ctx, dir, "dashboard-pool-idle.png")

	// The jobs list at a phone's width, then the usage chart.
	if err := p.p.SetWidth(ctx, 390, 844, true); err != nil {
		t.Fatal(err)
	}
	p.navigate(ctx, up.URL+"/jobs")
	p.waitFor(ctx, "the four jobs in the list", `document.querySelectorAll("#jobs tbody tr").length === 4`)
	usable("the jobs list on a phone", 390)
	p.screenshot(ctx, dir, "dashboard-jobs-phone.png")
	if err := p.p.SetWidth(ctx, 1280, 900, false); err != nil {
		t.Fatal(err)
	}
	// From the keyboard: the first Tab reaches the link past the menu, and
	// Enter on it moves to the page's content.
	key := func(k string, code int) {
		for _, typ := range []string{"keyDown", "keyUp"} {
			p.call(ctx, "Input.dispatchKeyEvent", map[string]any{"type": typ, "key": k, "code": k, "windowsVirtualKeyCode": code})
		}
	}
	key("Tab", 9)
	if got := p.eval(ctx, `document.activeElement.textContent`); got != jsString("Skip to the page's content") {
		t.Errorf("the first Tab on the jobs page reaches %s, want the link to the content", got)
	}
	key("Enter", 13)
	p.waitFor(ctx, "Enter on the link to move to the content", `location.hash === "#main"`)
	p.navigate(ctx, up.URL+"/usage")
	p.waitFor(ctx, "the usage chart drawn", `document.getElementById("mine-chart").dataset.drawn === "true" && !!document.querySelector("#mine-chart canvas")`)
	today := p.eval(ctx, `JSON.parse(document.getElementById("mine-chart").dataset.chart).data[1].at(-1)`)
	if hours, err := strconv.ParseFloat(today, 64); err != nil || hours <= 0 || hours > 1 {
		t.Errorf("the chart's job hours of today: %s, want the few seconds the jobs ran", today)
	}
	usable("the usage page", 1280)
	p.screenshot(ctx, dir, "dashboard-usage.png")
	p.navigate(ctx, up.URL+"/pools")
	p.waitFor(ctx, "the pools", `!!document.querySelector('tr[data-node]')`)
	p.screenshot(ctx, dir, "dashboard-pools.png")

	// The admin, from a link to the audit log.
	p.eval(ctx, `document.querySelector('form[action="/logout"]').submit(); true`)
	p.waitFor(ctx, "the login form after logging out", `!!document.getElementById("password")`)
	audit := up.URL + "/admin/audit?user=" + u.Name
	p.call(ctx, "Page.navigate", map[string]any{"url": audit})
	logIn(admin.Name, "admin horse battery")
	p.waitFor(ctx, "the audit log after the admin's login", `location.href === `+jsString(audit)+` && !!document.getElementById("audit")`)
	if got := p.eval(ctx, `[...document.querySelectorAll("#audit tbody tr")].some(r => r.textContent.includes("login.web") && r.textContent.includes("success"))`); got != "true" {
		t.Errorf("the audit log filtered on %s lacks the user's web login", u.Name)
	}
	usable("the audit log", 1280)
	p.screenshot(ctx, dir, "dashboard-audit.png")
	p.navigate(ctx, up.URL+"/admin")
	if got := p.eval(ctx, `document.getElementById("users").textContent.includes(`+jsString(u.Name)+`)`); got != "true" {
		t.Errorf("the admin page does not list the user %s", u.Name)
	}
	p.screenshot(ctx, dir, "dashboard-admin.png")
}
