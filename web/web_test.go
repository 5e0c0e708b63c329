package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/web"
)

// browser is a cookie jar that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

type answer struct {
	status int
	loc    string
	body   string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) answer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, loc: resp.Header.Get("Location"), body: string(out)}
}

func (b *browser) get(path string) answer { return b.do("GET", path, nil) }

// logIn logs the browser in, asking to return to next.
func (b *browser) logIn(name, password, next string) answer {
	b.t.Helper()
	return b.do("POST", "/login", url.Values{"username": {name}, "password": {password}, "next": {next}})
}

var xsrfMeta = regexp.MustCompile(`<meta name="xsrf" content="([^"]+)">`)

// xsrf reads the login's XSRF token off a page.
func (b *browser) xsrf() string {
	b.t.Helper()
	m := xsrfMeta.FindStringSubmatch(b.get("/").body)
	if m == nil {
		b.t.Fatal("the home page carries no XSRF token")
	}
	return m[1]
}

// pool is a control plane with users ada and bob (passwords set) and the
// admin.
type pool struct {
	*dspooltest.Pool
	ada, bob *api.Client
}

const password = "correct horse battery"

func newPool(t *testing.T, uidBase int) *pool {
	p := &pool{Pool: dspooltest.New(t, dspooltest.Options{UIDBase: uidBase})}
	ctx := context.Background()
	for _, name := range []string{"ada", "bob"} {
		u, err := p.Admin.CreateUser(ctx, api.UserCreate{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Admin.SetPassword(ctx, name, password); err != nil {
			t.Fatal(err)
		}
		if name == "ada" {
			p.ada = p.ClientFor(u)
		} else {
			p.bob = p.ClientFor(u)
		}
	}
	return p
}

func (p *pool) submit(t *testing.T, c *api.Client, name string, command ...string) *dspool.Job {
	t.Helper()
	j, err := c.SubmitJob(context.Background(), &dspool.JobSpec{Name: name, Command: command, Pool: "default"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestUserStringsRenderInert: a job's name and command, which its user
// chose, show as text on every page that shows them, never as markup.
func TestUserStringsRenderInert(t *testing.T) {
	p := newPool(t, 49350)
	evil := `<script>alert("name")</script>`
	j := p.submit(t, p.ada, evil, "echo", `<img src=x onerror=alert(1)>`, `"><script>x</script>`)
	b := newBrowser(t, p.URL)
	if r := b.logIn("ada", password, ""); r.status != http.StatusSeeOther {
		t.Fatalf("log in: %d\n%s", r.status, r.body)
	}
	for _, path := range []string{"/jobs", "/jobs/" + j.Ref(), "/queue", "/pools"} {
		r := b.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, r.status, r.body)
		}
		for _, raw := range []string{"<script>alert", "<img src=x", `"><script>x`} {
			if strings.Contains(r.body, raw) {
				t.Errorf("GET %s: the page holds %q as markup:\n%s", path, raw, r.body)
			}
		}
		if path == "/jobs" || strings.HasPrefix(path, "/jobs/") {
			if !strings.Contains(r.body, "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;") {
				t.Errorf("GET %s: the job's name is not shown as text:\n%s", path, r.body)
			}
		}
	}
	if r := b.get("/jobs/" + j.Ref()); !strings.Contains(r.body, `&lt;img src=x onerror=alert(1)&gt;`) {
		t.Errorf("the job's page does not show its command as text:\n%s", r.body)
	}
}

// TestLoginReturnsToTheDeepLink: a page opened without a login sends the
// browser to log in, and the login returns to that page; a login asked to
// return elsewhere (another site, the API) goes home.
func TestLoginReturnsToTheDeepLink(t *testing.T) {
	p := newPool(t, 49360)
	j := p.submit(t, p.ada, "train", "sleep", "600")
	b := newBrowser(t, p.URL)
	deep := "/jobs/" + j.Ref() + "?attempt=1"
	r := b.get(deep)
	if r.status != http.StatusSeeOther || r.loc != "/?next="+url.QueryEscape(deep) {
		t.Fatalf("a deep link without a login: %d to %q, want the login form with where it was going", r.status, r.loc)
	}
	form := b.get(r.loc)
	if !strings.Contains(form.body, `name="next" value="`+strings.ReplaceAll(deep, "?", "?")+`"`) || !strings.Contains(form.body, `<label for="password">`) {
		t.Fatalf("the login form does not carry where to return, or lacks its labels:\n%s", form.body)
	}
	if wrong := b.logIn("ada", "wrong", deep); wrong.status != http.StatusUnauthorized || !strings.Contains(wrong.body, "Ask your pool") ||
		!strings.Contains(wrong.body, `name="next" value="`+deep+`"`) {
		t.Errorf("a wrong password: %d, want the form again with a message for a browser user and where to return:\n%s", wrong.status, wrong.body)
	}
	if ok := b.logIn("ada", password, deep); ok.status != http.StatusSeeOther || ok.loc != deep {
		t.Fatalf("the login: %d to %q, want back to %q", ok.status, ok.loc, deep)
	}
	if page := b.get(deep); page.status != http.StatusOK || !strings.Contains(page.body, "Job "+j.Ref()+": train") {
		t.Errorf("the deep link after the login: %d\n%s", page.status, page.body)
	}
	for _, next := range []string{"//evil.example/jobs", "https://evil.example/jobs", "/api/v1/tokens", "/nowhere"} {
		b := newBrowser(t, p.URL)
		if r := b.logIn("ada", password, next); r.status != http.StatusSeeOther || r.loc != "/" {
			t.Errorf("a login asked to return to %q: %d to %q, want home", next, r.status, r.loc)
		}
	}
}

func TestReturnable(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want       bool
	}{
		{"home", "/", true},
		{"jobs with filters", "/jobs?state=queued", true},
		{"a job", "/jobs/12", true},
		{"a task", "/jobs/40_3", true},
		{"a pool", "/pools/gpu", true},
		{"audit", "/admin/audit?user=ada", true},
		{"a Jupyter server", "/user/ada/lab", true},
		{"the API", "/api/v1/jobs", false},
		{"another site", "//evil.example/jobs", false},
		{"a scheme", "https://evil.example/", false},
		{"a backslash", "/jobs/\\evil", false},
		{"no page", "/nowhere", false},
		{"an action", "/jobs/3/cancel", false},
		{"out of a Jupyter path", "/user/ada/../../api/v1/tokens", false},
		{"a dot segment", "/user/./ada/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := web.Returnable(tc.path); got != tc.want {
				t.Errorf("Returnable(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

// TestCancelNeedsTheLoginsToken: the cancel button's form carries the
// login's XSRF token; a form without it (another site's) changes nothing.
func TestCancelNeedsTheLoginsToken(t *testing.T) {
	p := newPool(t, 49370)
	j := p.submit(t, p.ada, "train", "sleep", "600")
	b := newBrowser(t, p.URL)
	b.logIn("ada", password, "")
	forged := b.do("POST", "/jobs/"+j.Ref()+"/cancel", url.Values{"_xsrf": {"forged"}})
	if forged.status != http.StatusForbidden || !strings.Contains(forged.body, "reload the page") {
		t.Errorf("a cancel without the login's token: %d, want 403 with what to do\n%s", forged.status, forged.body)
	}
	if got, _ := p.ada.Job(context.Background(), j.ID); got.State != dspool.JobQueued {
		t.Fatalf("after a forged cancel the job is %s, want queued", got.State)
	}
	ok := b.do("POST", "/jobs/"+j.Ref()+"/cancel", url.Values{"_xsrf": {b.xsrf()}})
	if ok.status != http.StatusSeeOther || ok.loc != "/jobs/"+j.Ref() {
		t.Fatalf("cancel: %d to %q\n%s", ok.status, ok.loc, ok.body)
	}
	if got, _ := p.ada.Job(context.Background(), j.ID); got.State != dspool.JobCancelled {
		t.Errorf("after cancel the job is %s, want cancelled", got.State)
	}
	rerun := b.do("POST", "/jobs/"+j.Ref()+"/rerun", url.Values{"_xsrf": {b.xsrf()}})
	if rerun.status != http.StatusSeeOther || rerun.loc == "/jobs/"+j.Ref() || !strings.HasPrefix(rerun.loc, "/jobs/") {
		t.Fatalf("rerun: %d to %q, want the new job's page\n%s", rerun.status, rerun.loc, rerun.body)
	}
	again := b.get(rerun.loc)
	if !strings.Contains(again.body, "sleep 600") || !strings.Contains(again.body, ">queued<") {
		t.Errorf("the rerun's page does not show the same command, queued:\n%s", again.body)
	}
}

// TestOthersJobsStayTheirs: a user sees neither another user's job nor
// the admin pages; the dashboard answers as the API does.
func TestOthersJobsStayTheirs(t *testing.T) {
	p := newPool(t, 49380)
	j := p.submit(t, p.ada, "ada-secret-run", "sleep", "600")
	b := newBrowser(t, p.URL)
	b.logIn("bob", password, "")
	if r := b.get("/jobs/" + j.Ref()); r.status != http.StatusNotFound || strings.Contains(r.body, "ada-secret-run") ||
		!strings.Contains(r.body, "your jobs are on the Jobs page") || strings.Contains(r.body, "dspool job") {
		t.Errorf("bob opens ada's job: %d, want 404 without its name, saying where his jobs are (not a command)\n%s", r.status, r.body)
	}
	for _, path := range []string{"/jobs", "/jobs?all=true", "/pools"} {
		if r := b.get(path); r.status != http.StatusOK || strings.Contains(r.body, "ada-secret-run") {
			t.Errorf("bob's %s: %d, shows ada's job or fails\n%s", path, r.status, r.body)
		}
	}
	// The queue shows every user's waiting work, as dspool queue does
	// (names where the pool shows them), but no way into another's job.
	if r := b.get("/queue"); r.status != http.StatusOK || strings.Contains(r.body, `href="/jobs/`+j.Ref()+`"`) || !strings.Contains(r.body, `data-job="`+j.Ref()+`"`) {
		t.Errorf("bob's /queue: %d, links ada's job, leaves it out or fails\n%s", r.status, r.body)
	}
	if r := b.do("POST", "/jobs/"+j.Ref()+"/cancel", url.Values{"_xsrf": {b.xsrf()}}); r.status != http.StatusNotFound {
		t.Errorf("bob cancels ada's job: %d, want 404\n%s", r.status, r.body)
	}
	for _, path := range []string{"/admin", "/admin/audit"} {
		if r := b.get(path); r.status != http.StatusForbidden || !strings.Contains(r.body, "needs an admin") {
			t.Errorf("bob opens %s: %d, want 403 saying it needs an admin\n%s", path, r.status, r.body)
		}
	}
	if r := b.get("/"); strings.Contains(r.body, `href="/admin"`) {
		t.Errorf("bob's menu offers the admin pages")
	}
}

// TestAdminSeesThePool: an admin's pages list the users, tokens and the
// audit log, filtered; every page of the menu answers; the files the pages
// load are cached for good under their hash only.
func TestAdminSeesThePool(t *testing.T) {
	p := newPool(t, 49390)
	ctx := context.Background()
	admin, err := p.Admin.WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.SetPassword(ctx, admin.Name, password); err != nil {
		t.Fatal(err)
	}
	gpus := 1
	if _, err := p.Admin.SetUserLimits(ctx, "ada", dspool.Limits{GPUs: &gpus}); err != nil {
		t.Fatal(err)
	}
	newBrowser(t, p.URL).logIn("ada", password, "")
	b := newBrowser(t, p.URL)
	b.logIn(admin.Name, password, "")
	for _, path := range []string{"/", "/jobs?all=true", "/queue", "/pools", "/pools/default", "/usage", "/admin", "/admin/audit"} {
		if r := b.get(path); r.status != http.StatusOK || !strings.Contains(r.body, `href="/admin"`) {
			t.Errorf("the admin's %s: %d, or no Admin in the menu\n%s", path, r.status, r.body)
		}
	}
	if r := b.get("/admin"); !strings.Contains(r.body, "<td>ada</td>") || !strings.Contains(r.body, "<td>1 gpu</td>") || !strings.Contains(r.body, `id="tokens"`) {
		t.Errorf("the admin page lacks the user ada, her limit of 1 gpu or the tokens:\n%s", r.body)
	}
	r := b.get("/admin/audit?user=ada&since=1h")
	if !strings.Contains(r.body, "<td>login.web</td>") || strings.Contains(r.body, "<td>user bob</td>") {
		t.Errorf("the audit log of ada: want her web login and nothing about bob\n%s", r.body)
	}
	if r := b.get("/admin/audit?since=soon"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "e.g. 1h") {
		t.Errorf("the audit log since=soon: %d, want 400 saying what to give\n%s", r.status, r.body)
	}
	m := regexp.MustCompile(`href="(/static/pico\.min\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(b.get("/").body)
	if m == nil {
		t.Fatal("the page does not load pico.min.css by its hash")
	}
	for path, want := range map[string]string{m[1]: "immutable", "/static/pico.min.css?v=old": "no-cache"} {
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); resp.StatusCode != 200 || !strings.Contains(cc, want) {
			t.Errorf("GET %s: %d, Cache-Control %q, want %s", path, resp.StatusCode, cc, want)
		}
	}
}

// TestArrayPage: an array's id alone is the whole array's page, with its
// tasks and their states; a task's ref is that task's own page.
func TestArrayPage(t *testing.T) {
	p := newPool(t, 49400)
	j, err := p.ada.SubmitJob(context.Background(), &dspool.JobSpec{Name: "sweep", Command: []string{"true"}, Pool: "default", Array: "0-2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, p.URL)
	b.logIn("ada", password, "")
	id := strconv.FormatInt(j.ID, 10)
	r := b.get("/jobs/" + id)
	if r.status != http.StatusOK || !strings.Contains(r.body, "<title>Array "+id+": sweep") || !strings.Contains(r.body, `id="tasks"`) ||
		!strings.Contains(r.body, `href="/jobs/`+id+`_2"`) || !strings.Contains(r.body, "3 queued") || !strings.Contains(r.body, "Cancel array "+id) {
		t.Fatalf("GET /jobs/%s: %d, want the array's page with its 3 tasks queued\n%s", id, r.status, r.body)
	}
	r = b.get("/jobs/" + id + "_1")
	if r.status != http.StatusOK || !strings.Contains(r.body, "<title>Job "+id+"_1: sweep") || strings.Contains(r.body, `id="tasks"`) {
		t.Fatalf("GET /jobs/%s_1: %d, want task 1's own page\n%s", id, r.status, r.body)
	}
}
