// Package web is dspool's dashboard: the pages a browser user logs in to
// (their Jupyter server and SSH command, jobs and their logs, the queue,
// pools and nodes, usage, and for admins users, teams, tokens and the
// audit log), rendered on the server with html/template, and the few
// vendored files they load (docs/decisions/0030-dashboard.md).
//
// The pages read and change the pool only through the REST API, called in
// process as the browser's own login: they see and may do exactly what
// the API lets that user, through the same authorization and the same
// XSRF check. web never imports the control plane (server), never reads
// the store, and never trusts a form without the login's XSRF token.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

//go:embed static
var staticFS embed.FS

// Logins is what the control plane tells the pages about logins.
type Logins interface {
	// WebLogin returns the user a browser's login cookie names and the
	// login's XSRF token; an error (with the reason it ended) when the
	// request carries no login, or one that ended.
	WebLogin(r *http.Request) (*dspool.User, string, error)
	// LoginOffer says how the login form lets users in: single sign-on,
	// passwords.
	LoginOffer() Login
}

// Options configure a Dashboard. API and Logins are required.
type Options struct {
	// API serves /api/v1; the pages call it in process.
	API http.Handler
	// Logins tells the pages who is logged in.
	Logins Logins
	// SSH is the address of the pool's SSH gateway as it listens
	// ("host:port"; "" when there is none).
	SSH    string
	Logger *slog.Logger
	Now    func() time.Time
}

// Dashboard serves the pages.
type Dashboard struct {
	o Options
}

type asset struct {
	body  []byte
	hash  string
	ctype string
}

// New returns a Dashboard; Register mounts it.
func New(o Options) *Dashboard {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Dashboard{o: o}
}

// assets are the embedded files by name, each with a hash of its content
// that the pages put in its address (/static/NAME?v=HASH, see assetURL):
// such an address is cached for good, so pages load without asking again.
// They are hashed at their first use.
var assets = sync.OnceValue(func() map[string]asset {
	out := map[string]asset{}
	_ = fs.WalkDir(staticFS, "static", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[path.Base(p)] = asset{body: b, hash: hex.EncodeToString(sum[:8]), ctype: contentType(p)}
		return nil
	})
	return out
})

// assetURL is the address of the embedded file name, with its hash.
func assetURL(name string) string {
	return "/static/" + name + "?v=" + assets()[name].hash
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// pages are the dashboard's pages: the pattern of each, its template and
// what reads its data; a login may return to any of them (Returnable).
var pages = []struct {
	pattern, name string
	load          func(*Dashboard, *visit) (title string, data any, err error)
}{
	{"GET /{$}", "home", (*Dashboard).home},
	{"GET /jobs", "jobs", (*Dashboard).jobs},
	{"GET /jobs/{ref}", "job", (*Dashboard).job},
	{"GET /queue", "queue", (*Dashboard).queue},
	{"GET /pools", "pools", (*Dashboard).pools},
	{"GET /pools/{name}", "pool", (*Dashboard).pool},
	{"GET /usage", "usage", (*Dashboard).usage},
	{"GET /admin", "admin", (*Dashboard).admin},
	{"GET /admin/audit", "audit", (*Dashboard).audit},
}

// serve answers a page: the browser's login (or the login form), the
// page's data read through the API as that login, and its template; a
// failure to read it is a page that says what happened.
func (d *Dashboard) serve(name string, load func(*Dashboard, *visit) (string, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := d.login(w, r)
		if v == nil {
			return
		}
		title, data, err := load(d, v)
		if err != nil {
			d.fail(w, r, v, err)
			return
		}
		d.render(w, r, http.StatusOK, name, v, title, data)
	}
}

// Register mounts the pages, their actions and their files on mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	for _, p := range pages {
		mux.HandleFunc(p.pattern, d.serve(p.name, p.load))
	}
	mux.HandleFunc("POST /jobs/{ref}/cancel", d.cancel)
	mux.HandleFunc("POST /jobs/{ref}/rerun", d.rerun)
	mux.HandleFunc("POST /notebook/start", d.startNotebook)
	mux.HandleFunc("POST /notebook/stop", d.stopNotebook)
	mux.HandleFunc("GET /static/{file}", d.serveStatic)
}

// Returnable reports whether a login may return to p: a path of one of
// the dashboard's pages, or of a user's Jupyter server (/user/NAME/...),
// on this server (never another site, //host, a scheme or the API).
func Returnable(p string) bool {
	if len(p) > 2048 || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\r\n\t") {
		return false
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(p, "//") ||
		strings.Contains(u.Path+"/", "/../") || strings.Contains(u.Path+"/", "/./") {
		return false
	}
	if strings.HasPrefix(u.Path, "/user/") {
		return true
	}
	_, pattern := pageMux().Handler(&http.Request{Method: "GET", URL: u, Host: "x"})
	return pattern != ""
}

// pageMux matches the paths of the pages, for Returnable.
var pageMux = sync.OnceValue(func() *http.ServeMux {
	mux := http.NewServeMux()
	for _, p := range pages {
		mux.HandleFunc(p.pattern, func(http.ResponseWriter, *http.Request) {})
	}
	return mux
})

func (d *Dashboard) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := assets()[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("ETag", `"`+a.hash+`"`)
	if r.URL.Query().Get("v") == a.hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// SetSecurityHeaders are the headers of every page the pool serves a
// browser: no inline script or style, no frames, no sniffing, no caching.
func SetSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// visit is one request of a logged-in browser: its user, its login's XSRF
// token and a client of the API that acts as that login.
type visit struct {
	r    *http.Request
	user *dspool.User
	xsrf string
	api  *api.Client
}

// login resolves the browser's login; without one it sends the browser to
// the login form, which returns here, and returns nil.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) *visit {
	u, xsrf, err := d.o.Logins.WebLogin(r)
	if err != nil {
		if r.URL.Path == "/" {
			d.loginForm(w, r, err)
		} else {
			http.Redirect(w, r, "/?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		}
		return nil
	}
	return &visit{r: r, user: u, xsrf: xsrf, api: d.client(r, "")}
}

// action resolves the login of a form that changes something: the API
// checks the form's XSRF token as it checks a script's header.
func (d *Dashboard) action(w http.ResponseWriter, r *http.Request) *visit {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	u, xsrf, err := d.o.Logins.WebLogin(r)
	if err != nil {
		d.fail(w, r, nil, dspool.Errorf(dspool.EUnauthorized, "%s: log in again, then repeat what you did", dspool.Message(err)))
		return nil
	}
	return &visit{r: r, user: u, xsrf: xsrf, api: d.client(r, r.PostFormValue("_xsrf"))}
}

// client returns an API client that calls the API in process as the
// browser that sent r: its cookie, address and forwarding headers, and the
// XSRF token xsrf ("" for reads).
func (d *Dashboard) client(r *http.Request, xsrf string) *api.Client {
	return &api.Client{Server: "http://in-process", BusyFor: -1,
		HTTP: &http.Client{Transport: asBrowser{api: d.o.API, from: r, xsrf: xsrf}}}
}

type asBrowser struct {
	api  http.Handler
	from *http.Request
	xsrf string
}

func (t asBrowser) RoundTrip(req *http.Request) (*http.Response, error) {
	sub := req.Clone(req.Context())
	sub.RemoteAddr, sub.Host, sub.TLS = t.from.RemoteAddr, t.from.Host, t.from.TLS
	sub.RequestURI = sub.URL.RequestURI()
	if sub.Body == nil {
		sub.Body = http.NoBody
	}
	for _, h := range []string{"Cookie", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "User-Agent"} {
		if v := t.from.Header.Values(h); len(v) > 0 {
			sub.Header[h] = v
		}
	}
	if t.xsrf != "" {
		sub.Header.Set("X-XSRF-Token", t.xsrf)
	}
	rec := &recorder{header: http.Header{}}
	t.api.ServeHTTP(rec, sub)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return &http.Response{StatusCode: rec.code, Status: http.StatusText(rec.code), Header: rec.header, Request: req,
		Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// recorder keeps what the API answers a page.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// fail answers a page whose API call failed with a page that says what
// happened and what to do.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, v *visit, err error) {
	status := http.StatusInternalServerError
	msg := "Something went wrong on the pool's side: try again, and if it persists, tell your pool's admin (the server's log has the details)."
	var e *dspool.Error
	if errors.As(err, &e) && e.Code != dspool.EInternal {
		status, msg = api.HTTPStatus(e.Code), sentence(e.Message)
	} else if !errors.Is(err, context.Canceled) {
		d.o.Logger.Error("dashboard page failed", "path", r.URL.Path, "err", err)
	}
	if e != nil && e.Code == dspool.EUnauthorized && v == nil && r.Method == "GET" {
		http.Redirect(w, r, "/?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	d.render(w, r, status, "error", v, "Something went wrong", struct{ Message string }{msg})
}

// sentence makes an API message a sentence for a page: "Job 3 has ended:
// nothing to cancel."
func sentence(msg string) string {
	if msg == "" {
		return ""
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}
