package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of the table. VsDirect is dspool's proxy / direct (the
// same jupyter_server without proxy), VsHub dspool / JupyterHub through
// its proxy.
type Row struct {
	Metric    string   `json:"metric"`
	Dspool    *float64 `json:"dspool"`
	Direct    *float64 `json:"direct"`
	Hub       *float64 `json:"jupyterhub"`
	HubDirect *float64 `json:"jupyterhub_direct"`
	VsDirect  *float64 `json:"dspool_vs_direct"`
	VsHub     *float64 `json:"dspool_vs_jupyterhub"`
	Target    string   `json:"target,omitempty"`
	Status    string   `json:"status,omitempty"` // met, MISSED, or which figure is missing

	// The targets: dspool / direct >= minDirect, dspool / jupyterhub >=
	// minHub or <= maxHub (0: none).
	minDirect, minHub, maxHub float64
	noRatio                   bool    // the load, not a comparison
	failed                    [4]bool // the cell was measured and failed, by column
}

func report(w io.Writer, jsonOut string, r *Results) error {
	n := r.Sizes
	dist := func(s *Side, p90 bool, f func(*Side) *Dist) *float64 {
		if s == nil || f(s) == nil {
			return nil
		}
		if p90 {
			return &f(s).P90
		}
		return &f(s).P50
	}
	login := func(s *Side) *Dist { return s.Login }
	stop := func(s *Side) *Dist { return s.Stop }
	cell := func(s *Side, direct bool, path string, c int, f func(*Load) *float64) (*float64, bool) {
		if s == nil {
			return nil, false
		}
		loads := s.Proxy
		if direct {
			loads = s.Direct
		}
		for _, l := range loads {
			if l.Path == path && l.Conc == c {
				if l.Error != "" {
					return nil, true
				}
				return f(l), false
			}
		}
		return nil, s.Error != ""
	}
	row := func(metric string, f func(*Load) *float64, path string, c int) Row {
		x := Row{Metric: metric}
		x.Dspool, x.failed[0] = cell(r.Dspool, false, path, c, f)
		x.Direct, x.failed[1] = cell(r.Dspool, true, path, c, f)
		x.Hub, x.failed[2] = cell(r.Hub, false, path, c, f)
		x.HubDirect, x.failed[3] = cell(r.Hub, true, path, c, f)
		return x
	}
	bare := func(s *Side) *Dist { return s.Bare }
	rows := []Row{
		{Metric: fmt.Sprintf("login -> server ready p50 (s, %d runs)", n.Runs), Target: "<= 0.5x jupyterhub", maxHub: 0.5,
			Dspool: dist(r.Dspool, false, login), Hub: dist(r.Hub, false, login)},
		{Metric: fmt.Sprintf("login -> server ready p90 (s, %d runs)", n.Runs),
			Dspool: dist(r.Dspool, true, login), Hub: dist(r.Hub, true, login)},
		{Metric: "start -> answers, no login or proxy p50 (s)", Direct: dist(r.Dspool, false, bare), Target: "the floor of login -> ready"},
		{Metric: "stop -> stopped p50 (s)", Dspool: dist(r.Dspool, false, stop), Hub: dist(r.Hub, false, stop)},
	}
	for _, p := range n.Paths {
		name := p
		if p == staticPath {
			name = "static file"
		}
		for _, c := range n.Concurrency {
			tput := row(fmt.Sprintf("GET %s c=%d (req/s, %gs)", name, c, n.DurationS), func(l *Load) *float64 { return &l.ReqPerS }, p, c)
			if p == "api" {
				tput.Target, tput.minDirect, tput.minHub = ">= 0.9x direct, >= 2x jupyterhub", 0.9, 2
			}
			rows = append(rows, tput,
				row(fmt.Sprintf("GET %s c=%d p50 (ms)", name, c), func(l *Load) *float64 { return &l.P50Ms }, p, c),
				row(fmt.Sprintf("GET %s c=%d p90 (ms)", name, c), func(l *Load) *float64 { return &l.P90Ms }, p, c))
		}
	}
	// A side that failed before its figures: say so in its columns of
	// the rows above (the throughput rows say it for each cell).
	failed := func(s *Side) bool { return s != nil && s.Error != "" }
	for i := range rows {
		x := &rows[i]
		x.failed[0] = x.failed[0] || x.Dspool == nil && x.Target != "the floor of login -> ready" && failed(r.Dspool)
		x.failed[2] = x.failed[2] || x.Hub == nil && x.Target != "the floor of login -> ready" && failed(r.Hub)
	}
	load := func(s *Side, i int) *float64 {
		if s == nil {
			return nil
		}
		return &s.Load1[i]
	}
	rows = append(rows,
		Row{Metric: "load1 before the side", Dspool: load(r.Dspool, 0), Hub: load(r.Hub, 0), noRatio: true},
		Row{Metric: "load1 after the side", Dspool: load(r.Dspool, 1), Hub: load(r.Hub, 1), noRatio: true})

	for i := range rows {
		x := &rows[i]
		if x.noRatio || x.Dspool == nil {
			continue
		}
		if x.Direct != nil && *x.Direct != 0 {
			v := *x.Dspool / *x.Direct
			x.VsDirect = &v
		}
		if x.Hub != nil && *x.Hub != 0 {
			v := *x.Dspool / *x.Hub
			x.VsHub = &v
		}
	}
	for i := range rows {
		x := &rows[i]
		var st []string
		if x.minDirect > 0 {
			st = append(st, status("direct", x.VsDirect, x.VsDirect != nil && *x.VsDirect >= x.minDirect))
		}
		if x.minHub > 0 {
			st = append(st, status("jupyterhub", x.VsHub, x.VsHub != nil && *x.VsHub >= x.minHub))
		}
		if x.maxHub > 0 {
			st = append(st, status("jupyterhub", x.VsHub, x.VsHub != nil && *x.VsHub <= x.maxHub))
		}
		if x.Dspool == nil && len(st) > 0 {
			st = []string{"no dspool figure"}
		}
		x.Status = strings.Join(st, "; ")
	}

	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "metric\t dspool proxy\t direct\t jupyterhub (CHP)\t jupyterhub direct\t dspool/direct\t dspool/jupyterhub\t target")
	for _, x := range rows {
		target := x.Target
		if x.Status != "" {
			target += " (" + x.Status + ")"
		}
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\t %s\t %s\t %s\t %s\n", x.Metric, fig(x.Dspool, x.failed[0]), fig(x.Direct, x.failed[1]),
			fig(x.Hub, x.failed[2]), fig(x.HubDirect, x.failed[3]), ratio(x.VsDirect), ratio(x.VsHub), target)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d cpus; the load generator (this program, keep-alive connections, one per client) shares them with the servers\n", r.CPUs)
	for _, s := range []*Side{r.Dspool, r.Hub} {
		if s == nil {
			continue
		}
		fmt.Fprintf(w, "%s: %s", s.Name, or(s.Versions, "version unknown"))
		if s.Server != "" {
			fmt.Fprintf(w, "; the single-user server's /api: %s", s.Server)
		}
		if s.DirectTo != "" {
			fmt.Fprintf(w, "; direct: %s", s.DirectTo)
		}
		fmt.Fprintln(w)
		if d := s.Login; d != nil {
			fmt.Fprintf(w, "  login -> first 200 through the proxy: min %.3f max %.3f s", d.Min, d.Max)
			if e := s.LoggedIn; e != nil {
				fmt.Fprintf(w, "; of which the login: p50 %.3f s", e.P50)
			}
			if e := s.Ready; e != nil {
				fmt.Fprintf(w, "; login -> the API says ready: p50 %.3f p90 %.3f s", e.P50, e.P90)
			}
			if e := s.Stop; e != nil {
				fmt.Fprintf(w, "; stop p90 %.3f s", e.P90)
			}
			fmt.Fprintln(w)
		}
		if d := s.Bare; d != nil {
			fmt.Fprintf(w, "  the direct jupyter_server, start -> answers: min %.3f p90 %.3f max %.3f s\n", d.Min, d.P90, d.Max)
		}
		var errs []string
		for _, l := range append(append([]*Load(nil), s.Proxy...), s.Direct...) {
			if l.Errors > 0 {
				errs = append(errs, fmt.Sprintf("%s c=%d: %d errors (%s)", l.Path, l.Conc, l.Errors, l.FirstError))
			}
			if l.Error != "" {
				errs = append(errs, fmt.Sprintf("%s c=%d failed: %s", l.Path, l.Conc, l.Error))
			}
		}
		for _, e := range errs {
			fmt.Fprintf(w, "  %s\n", e)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "  failed: %s\n", s.Error)
		}
	}
	for _, note := range r.Notes {
		fmt.Fprintln(w, note)
	}
	if jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "results": r, "rows": rows}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonOut, append(b, '\n'), 0o644)
}

func status(than string, v *float64, ok bool) string {
	switch {
	case v == nil:
		return "no " + than + " figure"
	case ok:
		return "met vs " + than
	default:
		return "MISSED vs " + than
	}
}

// fig is a figure, "failed" when it was measured and failed, else "-".
func fig(f *float64, failed bool) string {
	switch {
	case f != nil:
		return num(*f)
	case failed:
		return "failed"
	default:
		return "-"
	}
}

func ratio(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.3gx", *f)
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func num(f float64) string {
	if f >= 100 || f <= -100 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.3g", f)
}
