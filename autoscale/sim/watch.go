package sim

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// ruleWatch keeps the metric history that Decide reads for rules (one
// sample a second) and tells when a rule's mean may cross its threshold,
// so that the clock can skip the seconds where it cannot.
type ruleWatch struct {
	rules  []dspool.ScaleRule
	metric []int
	window []int64 // seconds
	keep   int     // samples kept: the longest window and 2
	start  time.Time

	history []autoscale.Sample
	// runStart is the time of the first sample of the run of equal samples
	// that ends the history.
	runStart time.Time
	sums     []float64 // per rule, of the samples in its window
	evalAt   time.Time // when Decide last ran
	status   []int8    // per rule at evalAt: holds (1), not (0), too close to tell (-1)
}

func newRuleWatch(rules []dspool.ScaleRule, start time.Time) *ruleWatch {
	w := &ruleWatch{rules: rules, start: start, sums: make([]float64, len(rules)), status: make([]int8, len(rules))}
	longest := int64(0)
	for _, r := range rules {
		m := slices.Index(autoscale.Metrics[:], r.Metric)
		w.metric = append(w.metric, m)
		secs := int64(time.Duration(r.Window) / time.Second)
		w.window = append(w.window, secs)
		longest = max(longest, secs)
	}
	w.keep = int(longest) + 2
	return w
}

// record adds the sample of a second, one after the last (or replaces the
// last when it is for the same second).
func (w *ruleWatch) record(s autoscale.Sample) {
	n := len(w.history)
	if n > 0 && w.history[n-1].At.Equal(s.At) {
		w.history = w.history[:n-1]
		w.resum()
		n--
	}
	if n > 0 && s.At.Sub(w.history[n-1].At) != time.Second {
		panic("sim: samples must be one second apart")
	}
	if n == 0 || s.Values != w.history[n-1].Values {
		w.runStart = s.At
	}
	w.history = append(w.history, s)
	for i, m := range w.metric {
		if m < 0 {
			continue
		}
		w.sums[i] += s.Values[m]
		if k := len(w.history) - 1 - int(w.window[i]); k >= 0 {
			w.sums[i] -= w.history[k].Values[m]
		}
	}
	if len(w.history) >= 2*w.keep+1024 {
		w.history = append(w.history[:0], w.history[len(w.history)-w.keep:]...)
	}
}

// repeat records the last sample again for second u.
func (w *ruleWatch) repeat(u time.Time) {
	s := w.history[len(w.history)-1]
	s.At = u
	w.record(s)
}

// resum recomputes the window sums exactly, dropping rounding drift.
func (w *ruleWatch) resum() {
	for i, m := range w.metric {
		w.sums[i] = 0
		if m < 0 {
			continue
		}
		for k := max(0, len(w.history)-int(w.window[i])); k < len(w.history); k++ {
			w.sums[i] += w.history[k].Values[m]
		}
	}
}

// covered reports whether rule i has a whole window of history at u.
func (w *ruleWatch) covered(i int, u time.Time) bool {
	return !w.start.Add(time.Duration(w.window[i]) * time.Second).After(u)
}

// state is rule i's state at the last recorded second.
func (w *ruleWatch) state(i int) int8 {
	u := w.history[len(w.history)-1].At
	if w.metric[i] < 0 || !w.covered(i, u) {
		return 0
	}
	r := &w.rules[i]
	mean := w.sums[i] / float64(w.window[i])
	if math.Abs(mean-r.Threshold) <= 1e-7*(1+math.Abs(r.Threshold)) {
		return -1
	}
	if r.Holds(mean) {
		return 1
	}
	return 0
}

// snapshot notes the rules' states at t, when Decide ran.
func (w *ruleWatch) snapshot(t time.Time) {
	w.resum()
	w.evalAt = t
	for i := range w.rules {
		w.status[i] = w.state(i)
	}
}

// mayFlip reports whether, with the sample of u recorded, a rule's mean
// may compare to its threshold otherwise than at the last decision.
func (w *ruleWatch) mayFlip(u time.Time) bool {
	for i := range w.rules {
		then, now := w.covered(i, w.evalAt), w.covered(i, u)
		if then != now {
			return true
		}
		if !now {
			continue
		}
		// The window held only samples of the present run then, so it
		// holds the same samples now.
		if !w.runStart.After(w.evalAt.Add(-time.Duration(w.window[i]-1) * time.Second)) {
			continue
		}
		st := w.state(i)
		if st < 0 || w.status[i] < 0 || st != w.status[i] {
			return true
		}
	}
	return false
}

// boundaries returns the times in [from, to] at which the schedules of pol
// may start or end, in order: each schedule's from and to on every day,
// and every minute of a day on which the zone's offset changes.
func boundaries(pol *dspool.Autoscale, from, to time.Time) []time.Time {
	var out []time.Time
	for i := range pol.Schedules {
		sc := &pol.Schedules[i]
		loc, err := time.LoadLocation(sc.Timezone)
		if err != nil {
			continue // never active
		}
		clocks := []int{minutes(sc.From), minutes(sc.To)}
		y, m, d := from.In(loc).Date()
		for day := time.Date(y, m, d-1, 0, 0, 0, 0, loc); !day.After(to); {
			y, m, d := day.Date()
			next := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
			for _, c := range clocks {
				if c >= 0 {
					out = append(out, time.Date(y, m, d, c/60, c%60, 0, 0, loc))
				}
			}
			_, a := day.Zone()
			if _, b := next.Zone(); a != b {
				for t := day; t.Before(next); t = t.Add(time.Minute) {
					out = append(out, t)
				}
			}
			day = next
		}
	}
	for i := range out {
		out[i] = out[i].UTC()
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(out, func(a, b time.Time) bool { return a.Equal(b) })
}

// minutes parses a schedule's "HH:MM" (already validated), or -1.
func minutes(s string) int {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil {
		return -1
	}
	return hh*60 + mm
}
