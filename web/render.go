package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
)

//go:embed templates
var templateFS embed.FS

// templates are the pages by name, each parsed with the layout, at the
// first page served: a CLI command that never serves one pays nothing.
var templates = sync.OnceValue(func() map[string]*template.Template {
	funcs := template.FuncMap{"when": when, "dur": dur, "cmdline": cmdline, "took": took, "ago": ago, "expired": expired, "hours": hours, "asset": assetURL, "needs": needs, "node": node}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	out := map[string]*template.Template{}
	for _, name := range []string{"login", "error", "home", "jobs", "job", "queue", "pools", "pool", "usage", "admin", "audit"} {
		out[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return out
})

// page is what the layout shows around a page's own data.
type page struct {
	Title string
	User  *dspool.User
	XSRF  string
	// Nav is the section of the menu the page belongs to.
	Nav  string
	Data any
}

// render writes page name, whose title is title, with data for visit v
// (nil before a login).
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, v *visit, title string, data any) {
	p := page{Title: title, Data: data, Nav: name}
	if v != nil {
		p.User, p.XSRF = v.user, v.xsrf
	}
	switch name {
	case "job":
		p.Nav = "jobs"
	case "pool":
		p.Nav = "pools"
	case "audit":
		p.Nav = "admin"
	}
	var buf bytes.Buffer
	if err := templates()[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		d.o.Logger.Error("render dashboard page", "page", name, "err", err)
		http.Error(w, "This page could not be drawn: reload it, and if it persists, tell your pool's admin.", http.StatusInternalServerError)
		return
	}
	SetSecurityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// when writes a time for a page; nil or zero is "—".
func when(t any) string {
	var tt time.Time
	switch x := t.(type) {
	case time.Time:
		tt = x
	case *time.Time:
		if x != nil {
			tt = *x
		}
	}
	if tt.IsZero() {
		return "—"
	}
	return tt.UTC().Format("2006-01-02 15:04:05 UTC")
}

// dur writes a duration to the second, or "—" for none.
func dur(d any) string {
	var x time.Duration
	switch v := d.(type) {
	case time.Duration:
		x = v
	case dspool.Duration:
		x = time.Duration(v)
	case float64: // seconds
		x = time.Duration(v * float64(time.Second))
	}
	if x <= 0 {
		return "—"
	}
	return x.Round(time.Second).String()
}

// took is how long from start to end (now while end is nil).
func took(start, end *time.Time) string {
	if start == nil {
		return "—"
	}
	e := time.Now()
	if end != nil {
		e = *end
	}
	return dur(e.Sub(*start))
}

// ago writes how long before now t was: "3m0s ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return dur(time.Since(t)) + " ago"
}

// cmdline writes a command as a shell would read it back.
func cmdline(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// sshCommand is the command that logs user in over SSH to the gateway
// listening at addr, for a browser that reached the pool at host ("" when
// addr is not HOST:PORT).
func sshCommand(addr, host, user string) string {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
	}
	if port == "22" {
		return fmt.Sprintf("ssh %s@%s", user, h)
	}
	return fmt.Sprintf("ssh -p %s %s@%s", port, user, h)
}

// hours writes a span given in hours: minutes under an hour.
func hours(h float64) string {
	if h < 1 {
		return fmt.Sprintf("%.1f min", h*60)
	}
	return fmt.Sprintf("%.2f h", h)
}

// needs writes what work holds: "1 CPU, 2GiB", "0.5 CPUs, 8GiB, 2 GPUs".
func needs(cpus dspool.MilliCPU, mem dspool.Bytes, gpus int) string {
	s := cpus.String() + " CPUs"
	if cpus == 1000 {
		s = "1 CPU"
	}
	s += ", " + mem.String()
	switch {
	case gpus == 1:
		s += ", 1 GPU"
	case gpus > 1:
		s += fmt.Sprintf(", %d GPUs", gpus)
	}
	return s
}

// node writes a node by its name where names has it, else by its id (a
// node removed since).
func node(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}
