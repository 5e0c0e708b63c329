package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
)

// SSHRow is a line of the first table: dspool's gateway to a node in h2
// beside OpenSSH in h2, from h4.
type SSHRow struct {
	Metric   string   `json:"metric"`
	Dspool   *float64 `json:"dspool"`
	Direct   *float64 `json:"openssh_direct"`
	Jump     *float64 `json:"openssh_jump"`
	VsDirect *float64 `json:"dspool_vs_direct"`
	VsJump   *float64 `json:"dspool_vs_jump"`
	Target   string   `json:"target,omitempty"`
	Status   string   `json:"status,omitempty"` // met, MISSED: why, or which figure is missing
}

// LinkRow is a line of the second table: dspool's figures by where its
// node is and how its agent reaches the control plane.
type LinkRow struct {
	Metric  string   `json:"metric"`
	H2HTTPS *float64 `json:"h2_https"`
	H1HTTPS *float64 `json:"h1_https"`
	H1Plain *float64 `json:"h1_plain"`
	// TLSCost is what TLS on the link costs the figure (h1 HTTPS against
	// h1 plain), as a fraction: positive when TLS is slower.
	TLSCost *float64 `json:"tls_cost"`
	Target  string   `json:"target,omitempty"`
	Status  string   `json:"status,omitempty"`
}

const (
	tlsTarget = "TLS <= 10%"
	jobTarget = "<= 20 ms (h2); " + tlsTarget
)

func report(w io.Writer, jsonOut string, r *Results) error {
	ssh, link := sshRows(r), linkRows(r)
	fmt.Fprintf(w, "SSH from h4 to a shell in h2 (ssh -c %s for the throughput; the same client and options for every target)\n", r.Cipher)
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "metric\t dspool (gateway h1 -> node h2)\t openssh direct (h2)\t openssh jump host (h1 -> h2)\t dspool/direct\t dspool/jump\t target")
	for _, x := range ssh {
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\t %s\t %s\t %s\n", x.Metric, num(x.Dspool), num(x.Direct), num(x.Jump),
			times(x.VsDirect), times(x.VsJump), targetCell(x.Target, x.Status))
	}
	tw.Flush()
	printReferences(w, r)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "dspool by where the node is and how its agent reaches the control plane (clients in h4, over HTTPS and the gateway)")
	tw = tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "metric\t node h2, HTTPS link\t node h1, HTTPS link\t node h1, plain link\t TLS cost (h1)\t target")
	for _, x := range link {
		cost := "-"
		if x.TLSCost != nil {
			cost = fmt.Sprintf("%+.1f%%", 100**x.TLSCost)
		}
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\t %s\t %s\n", x.Metric, num(x.H2HTTPS), num(x.H1HTTPS), num(x.H1Plain), cost, targetCell(x.Target, x.Status))
	}
	tw.Flush()
	printNotes(w, r)
	return host.WriteJSON(jsonOut, map[string]any{"time": time.Now().UTC(), "results": r, "ssh_rows": ssh, "link_rows": link})
}

// The figures, nil where missing.

func (t *SSHTarget) p50() *float64 { return t.latency(false) }
func (t *SSHTarget) p90() *float64 { return t.latency(true) }

func (t *SSHTarget) latency(p90 bool) *float64 {
	switch {
	case t == nil || t.Latency == nil || len(t.Latency.SamplesMs) == 0 || strings.HasPrefix(t.Error, "connect+exec"):
		return nil
	case p90:
		return &t.Latency.P90Ms
	}
	return &t.Latency.P50Ms
}

func (t *SSHTarget) tput() *float64 {
	if t == nil || t.Tput == nil || t.Error != "" || t.Tput.Error != "" || t.Tput.MiBPerS == 0 {
		return nil
	}
	return &t.Tput.MiBPerS
}

func (t *SSHTarget) cpu() *float64 {
	if t.tput() == nil || len(t.CPUPerGiB) == 0 {
		return nil
	}
	m := median(t.CPUPerGiB)
	return &m
}

// cell is the rate (or the p50) of v's Jupyter cell at conc.
func (v *Variant) cell(conc int, p50 bool) *float64 {
	for _, c := range v.Jupyter {
		if c.Conc == conc && c.Error == "" && len(c.Slices) > 0 {
			if p50 {
				return &c.P50Ms
			}
			return &c.ReqPerS
		}
	}
	return nil
}

func (v *Variant) jobs(p90 bool) *float64 {
	switch {
	case v.Jobs == nil || v.JobsError != "" || len(v.Jobs.SamplesMs) == 0:
		return nil
	case p90:
		return &v.Jobs.P90Ms
	}
	return &v.Jobs.P50Ms
}

func sshRows(r *Results) []SSHRow {
	n, d := r.Sizes, r.Variants[0].SSH
	rows := []SSHRow{
		{Metric: fmt.Sprintf("connect+exec p50 (ms, %d runs)", n.Runs), Dspool: d.p50(), Direct: r.Direct.p50(), Jump: r.Jump.p50(),
			Target: "<= 1.2x direct"},
		{Metric: fmt.Sprintf("connect+exec p90 (ms, %d runs)", n.Runs), Dspool: d.p90(), Direct: r.Direct.p90(), Jump: r.Jump.p90()},
		{Metric: fmt.Sprintf("throughput %s (MiB/s, %d MiB)", shortCipher(r.Cipher), n.MiB), Dspool: d.tput(), Direct: r.Direct.tput(), Jump: r.Jump.tput(),
			Target: ">= 1.0x direct, >= 2x jump"},
		{Metric: "cpu-s per GiB, connection included (all its processes)", Dspool: d.cpu(), Direct: r.Direct.cpu(), Jump: r.Jump.cpu()},
	}
	for i := range rows {
		x := &rows[i]
		x.VsDirect, x.VsJump = ratio(x.Dspool, x.Direct), ratio(x.Dspool, x.Jump)
		switch {
		case x.Target == "":
		case x.Dspool == nil:
			x.Status = "no dspool figure"
		case x.VsDirect == nil || i == 2 && x.VsJump == nil:
			x.Status = "no openssh figure"
		case i == 0:
			x.Status = status(*x.VsDirect <= 1.2, fmt.Sprintf("%.2fx > 1.2x", *x.VsDirect))
		default:
			var why []string
			if *x.VsDirect < 1.0 {
				why = append(why, fmt.Sprintf("%.2fx direct < 1.0x", *x.VsDirect))
			}
			if *x.VsJump < 2.0 {
				why = append(why, fmt.Sprintf("%.2fx jump < 2x", *x.VsJump))
			}
			x.Status = status(len(why) == 0, strings.Join(why, ", "))
		}
	}
	return rows
}

func linkRows(r *Results) []LinkRow {
	n := r.Sizes
	type spec struct {
		metric string
		fig    func(v *Variant) *float64
		rate   bool // higher is better
		target string
	}
	specs := []spec{
		{fmt.Sprintf("ssh connect+exec p50 (ms, %d runs)", n.Runs), func(v *Variant) *float64 { return v.SSH.p50() }, false, tlsTarget},
		{fmt.Sprintf("ssh throughput %s (MiB/s, %d MiB)", shortCipher(r.Cipher), n.MiB), func(v *Variant) *float64 { return v.SSH.tput() }, true, tlsTarget},
		{"ssh cpu-s per GiB, connection included", func(v *Variant) *float64 { return v.SSH.cpu() }, false, ""},
	}
	for _, conc := range n.Concurrency {
		specs = append(specs,
			spec{fmt.Sprintf("jupyter c=%d (req/s, %gs)", conc, n.CellS), func(v *Variant) *float64 { return v.cell(conc, false) }, true, tlsTarget},
			spec{fmt.Sprintf("jupyter c=%d p50 (ms)", conc), func(v *Variant) *float64 { return v.cell(conc, true) }, false, tlsTarget})
	}
	specs = append(specs,
		spec{fmt.Sprintf("job submit->start p50 (ms, %d jobs)", n.Jobs), func(v *Variant) *float64 { return v.jobs(false) }, false, jobTarget},
		spec{fmt.Sprintf("job submit->start p90 (ms, %d jobs)", n.Jobs), func(v *Variant) *float64 { return v.jobs(true) }, false, ""})
	var rows []LinkRow
	for _, s := range specs {
		x := LinkRow{Metric: s.metric, H2HTTPS: s.fig(r.Variants[0]), H1HTTPS: s.fig(r.Variants[1]), H1Plain: s.fig(r.Variants[2]), Target: s.target}
		if q := ratio(x.H1HTTPS, x.H1Plain); q != nil {
			cost := *q - 1
			if s.rate {
				cost = 1 - *q
			}
			x.TLSCost = &cost
		}
		var why []string
		switch {
		case x.Target == "":
		case x.TLSCost == nil:
			x.Status = "a figure is missing"
		default:
			if x.Target == jobTarget && (x.H2HTTPS == nil || *x.H2HTTPS > 20) {
				why = append(why, "h2 over 20 ms")
			}
			if *x.TLSCost > 0.10 {
				why = append(why, fmt.Sprintf("TLS costs %.0f%%", 100**x.TLSCost))
			}
			x.Status = status(len(why) == 0, strings.Join(why, ", "))
		}
		rows = append(rows, x)
	}
	return rows
}

// printReferences prints what the figures are bounded by.
func printReferences(w io.Writer, r *Results) {
	fmt.Fprintf(w, "references: TCP h4 -> h2, no ssh: %s MiB/s; local pipe (`cat`), no network: %s MiB/s\n", tputRef(r.TCP), tputRef(r.Pipe))
	for _, hs := range r.Handshakes {
		if hs.Error != "" {
			fmt.Fprintf(w, "references: %s\n", hs.Error)
			continue
		}
		fmt.Fprintf(w, "references: a new connection from %s to dspool server's API at %s, as an agent opens one per SSH session: p50 %.2f ms with its TLS handshake, %.2f ms for the TCP connect alone\n",
			hs.From, hs.To, hs.TLS.P50Ms, hs.TCP.P50Ms)
	}
}

// printNotes prints what each column is, each SSH target's details and every
// failure.
func printNotes(w io.Writer, r *Results) {
	fmt.Fprintf(w, "load1: %.2f at the start, %.2f once everything ran, %.2f at the end; %d cpus shared by every host; %s; %s\n",
		r.Load1[0], r.Load1[1], r.Load1[2], r.CPUs, r.Dspool, r.Client)
	for _, v := range r.Variants {
		fmt.Fprintf(w, "node %s: %s\n", v.Key, v.Link)
	}
	fmt.Fprintln(w, "TLS cost: the node in h1 over HTTPS against the node in h1 over plain HTTP, positive when TLS is slower; plain HTTP is allowed on loopback only, hence h1")
	for _, t := range []*SSHTarget{r.Direct, r.Jump, r.Variants[0].SSH, r.Variants[1].SSH, r.Variants[2].SSH} {
		fmt.Fprintf(w, "%s: %s; %s", t.Name, t.Route, or(t.Banner, "no banner"))
		if t.Kex != "" {
			fmt.Fprintf(w, "; kex %s, default cipher %s", t.Kex, t.Cipher)
		}
		if t.Latency != nil && len(t.Latency.SamplesMs) > 0 {
			fmt.Fprintf(w, "; connect+exec %.1f-%.1f ms", t.Latency.MinMs, t.Latency.MaxMs)
		}
		if t.Tput != nil && t.Tput.Error == "" && len(t.Tput.DataS) > 0 {
			fmt.Fprintf(w, "; %s MiB/s (with the connection setup %.0f)", t.Tput.Spread(r.Sizes.MiB), t.Tput.WallMiBPerS)
		}
		fmt.Fprintln(w)
		for _, e := range []string{t.Error, tputErr(t)} {
			if e != "" {
				fmt.Fprintf(w, "  failed: %s\n", e)
			}
		}
	}
	for _, v := range r.Variants {
		for _, e := range []string{v.JupyterError, v.JobsError} {
			if e != "" {
				fmt.Fprintf(w, "dspool %s failed: %s\n", v.Key, e)
			}
		}
	}
	if d, o := r.Variants[0].SSH, r.Direct; d.Kex != "" && o.Kex != "" && d.Kex != o.Kex {
		fmt.Fprintf(w, "note: the key exchanges differ (dspool %s, openssh %s), and so does their cost in connect+exec; compare with one: -kex ALGORITHM\n", d.Kex, o.Kex)
	}
	for _, note := range r.Notes {
		fmt.Fprintln(w, note)
	}
}

func ratio(a, b *float64) *float64 {
	if a == nil || b == nil || *b == 0 {
		return nil
	}
	q := *a / *b
	return &q
}

func status(ok bool, why string) string {
	if ok {
		return "met"
	}
	return "MISSED: " + why
}

func targetCell(target, status string) string {
	if status == "" {
		return target
	}
	return target + " (" + status + ")"
}

func shortCipher(c string) string { return strings.TrimSuffix(c, "@openssh.com") }

// tputRef is a reference throughput, or why it is missing.
func tputRef(tp *openssh.Tput) string {
	switch {
	case tp == nil:
		return "-"
	case tp.Error != "":
		return "failed (" + tp.Error + ")"
	}
	return fmt.Sprintf("%.0f", tp.MiBPerS)
}

func tputErr(t *SSHTarget) string {
	if t.Tput == nil {
		return ""
	}
	return t.Tput.Error
}

func times(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.3gx", *f)
}

func num(f *float64) string {
	switch {
	case f == nil:
		return "-"
	case *f >= 100 || *f <= -100:
		return fmt.Sprintf("%.0f", *f)
	}
	return fmt.Sprintf("%.3g", *f)
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
