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

// Row is one line of the table; Ratio is dspool / openssh direct.
type Row struct {
	Metric string   `json:"metric"`
	Dspool *float64 `json:"dspool"`
	// Compared are the figures of the -compare binaries, in their order.
	Compared []*float64 `json:"dspool_compared,omitempty"`
	Direct   *float64   `json:"openssh_direct"`
	Jump     *float64   `json:"openssh_jump"`
	Ratio    *float64   `json:"ratio"`
	Target   string     `json:"target,omitempty"`
	Status   string     `json:"status,omitempty"` // met, MISSED, or which figure is missing

	noRatio    bool // the row is a reference or the load, not a comparison
	dspoolOnly bool // OpenSSH has no such figure
}

func report(w io.Writer, jsonOut string, r *Results) error {
	n := r.Sizes
	lat := func(t *Target, p90 bool) *float64 {
		if t == nil || t.Latency == nil {
			return nil
		}
		if p90 {
			return &t.Latency.P90Ms
		}
		return &t.Latency.P50Ms
	}
	tput := func(t *Target, cipher string) *float64 {
		if t == nil || t.Throughput[cipher] == nil || t.Throughput[cipher].Error != "" {
			return nil
		}
		return &t.Throughput[cipher].MiBPerS
	}
	load := func(t *Target, i int) *float64 {
		if t == nil {
			return nil
		}
		return &t.Load1[i]
	}
	cpu := func(t *Target, cipher string) *float64 {
		if tput(t, cipher) == nil || t.ServerCPU[cipher] == nil || t.ServerCPU[cipher].PerGiB == 0 {
			return nil
		}
		return &t.ServerCPU[cipher].PerGiB
	}
	// compared is a figure of each -compare target.
	compared := func(f func(*Target) *float64) []*float64 {
		var v []*float64
		for _, t := range r.Compared {
			v = append(v, f(t))
		}
		return v
	}
	rows := []Row{
		{Metric: fmt.Sprintf("connect+exec p50 (ms, %d runs)", n.Runs), Target: "<= 1.2x direct",
			Dspool: lat(r.Dspool, false), Direct: lat(r.Direct, false), Jump: lat(r.Jump, false),
			Compared: compared(func(t *Target) *float64 { return lat(t, false) })},
		{Metric: fmt.Sprintf("connect+exec p90 (ms, %d runs)", n.Runs),
			Dspool: lat(r.Dspool, true), Direct: lat(r.Direct, true), Jump: lat(r.Jump, true),
			Compared: compared(func(t *Target) *float64 { return lat(t, true) })},
	}
	for _, c := range ciphers {
		rows = append(rows, Row{Metric: fmt.Sprintf("throughput %s (MiB/s, %d MiB)", shortCipher(c), n.MiB),
			Target: ">= 0.9x direct", Dspool: tput(r.Dspool, c), Direct: tput(r.Direct, c), Jump: tput(r.Jump, c),
			Compared: compared(func(t *Target) *float64 { return tput(t, c) })})
	}
	for _, c := range ciphers {
		rows = append(rows, Row{Metric: fmt.Sprintf("dspool up's cpu-s per GiB, %s", shortCipher(c)), noRatio: true, dspoolOnly: true,
			Dspool: cpu(r.Dspool, c), Compared: compared(func(t *Target) *float64 { return cpu(t, c) })})
	}
	// One figure, the ceiling of the throughput rows, shown in each column.
	pipe := &r.Pipe.MiBPerS
	rows = append(rows,
		Row{Metric: fmt.Sprintf("local pipe, no ssh (MiB/s, %d MiB)", n.MiB), Target: "reference (one figure)",
			Dspool: pipe, Direct: pipe, Jump: pipe, noRatio: true, Compared: compared(func(*Target) *float64 { return pipe })},
		Row{Metric: "load1 before", Dspool: load(r.Dspool, 0), Direct: load(r.Direct, 0), Jump: load(r.Jump, 0), noRatio: true,
			Compared: compared(func(t *Target) *float64 { return load(t, 0) })},
		Row{Metric: "load1 after", Dspool: load(r.Dspool, 1), Direct: load(r.Direct, 1), Jump: load(r.Jump, 1), noRatio: true,
			Compared: compared(func(t *Target) *float64 { return load(t, 1) })},
	)
	for i := range rows {
		x := &rows[i]
		if x.Dspool != nil && x.Direct != nil && *x.Direct != 0 && !x.noRatio {
			ratio := *x.Dspool / *x.Direct
			x.Ratio = &ratio
		}
		switch {
		case x.Target == "" || x.noRatio:
		case x.Dspool == nil:
			x.Status = "no dspool figure"
		case x.Ratio == nil:
			x.Status = "no openssh figure"
		case strings.HasPrefix(x.Target, "<="):
			x.Status = met(*x.Ratio <= 1.2)
		default:
			x.Status = met(*x.Ratio >= 0.9)
		}
	}

	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprint(tw, "metric\t dspool gateway\t ")
	for _, t := range r.Compared {
		fmt.Fprintf(tw, "%s\t ", t.Name)
	}
	fmt.Fprintln(tw, "openssh direct\t openssh jump host\t dspool/direct\t target")
	for _, x := range rows {
		ratio, target := "-", x.Target
		if x.Ratio != nil {
			ratio = fmt.Sprintf("%.3gx", *x.Ratio)
		}
		if x.Status != "" {
			target += " (" + x.Status + ")"
		}
		fmt.Fprintf(tw, "%s\t %s\t ", x.Metric, cell(x.Dspool, r.Dspool))
		for i, t := range r.Compared {
			fmt.Fprintf(tw, "%s\t ", cell(x.Compared[i], t))
		}
		direct, jump := cell(x.Direct, r.Direct), cell(x.Jump, r.Jump)
		if x.dspoolOnly {
			direct, jump = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\n", direct, jump, ratio, target)
	}
	tw.Flush()
	fmt.Fprintf(w, "client: %s, the same options for every target", r.Client)
	if r.KexOption != "" {
		fmt.Fprintf(w, " (KexAlgorithms=%s)", r.KexOption)
	}
	fmt.Fprintf(w, "; %d cpus\n", r.CPUs)
	fmt.Fprintf(w, "throughput: the median of %d transfers per target, the targets taking turns, each timed from ssh's first read of its input (the session is open) to its exit\n", n.TputRuns)
	for _, t := range append([]*Target{r.Dspool}, append(r.Compared, r.Direct, r.Jump)...) {
		if t == nil {
			continue
		}
		fmt.Fprintf(w, "%s: %s", t.Name, or(t.Banner, "no banner"))
		if t.Binary != "" {
			fmt.Fprintf(w, " (%s)", t.Binary)
		}
		if t.Kex != "" {
			fmt.Fprintf(w, "; kex %s, host key %s, default cipher %s", t.Kex, t.HostKey, t.Cipher)
		}
		if t.Latency != nil {
			fmt.Fprintf(w, "; connect+exec min %.1f max %.1f ms", t.Latency.MinMs, t.Latency.MaxMs)
		}
		var wall []string
		for _, c := range ciphers {
			if tp := t.Throughput[c]; tp != nil && tp.Error == "" {
				wall = append(wall, fmt.Sprintf("%s %.0f", shortCipher(c), tp.WallMiBPerS))
			}
		}
		if len(wall) > 0 {
			fmt.Fprintf(w, "; MiB/s with the connection setup: %s", strings.Join(wall, ", "))
		}
		fmt.Fprintln(w)
		if t.Error != "" {
			fmt.Fprintf(w, "  failed: %s\n", t.Error)
		}
		for _, c := range ciphers {
			if tp := t.Throughput[c]; tp != nil && tp.Error != "" {
				fmt.Fprintf(w, "  %s failed: %s\n", c, tp.Error)
			}
		}
	}
	if d, o := r.Dspool, r.Direct; d != nil && o != nil && d.Kex != "" && o.Kex != "" && d.Kex != o.Kex {
		fmt.Fprintf(w, "note: the key exchanges differ (dspool %s, openssh %s), and so does their cost in connect+exec; compare with one: -kex ALGORITHM\n",
			d.Kex, o.Kex)
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

// cell is a figure, "-" when its target was not measured, "failed" when it was.
func cell(f *float64, t *Target) string {
	switch {
	case f != nil:
		return num(*f)
	case t == nil:
		return "-"
	default:
		return "failed"
	}
}

func shortCipher(c string) string {
	if c == "" {
		return "default cipher"
	}
	return strings.TrimSuffix(c, "@openssh.com")
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
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
