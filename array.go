package dspool

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Job arrays: one submission of many tasks of the same command, each a job
// of its own (with its own state, attempts and log) that knows its index.
// The tasks of an array get consecutive job ids; the first one's id names
// the array, and ID_INDEX names one task, as in Slurm.

// MaxArrayTasks bounds the tasks of one array, and MaxArrayIndex its
// indices.
const (
	MaxArrayTasks = 100_000
	MaxArrayIndex = 10_000_000
)

// ArraySpec is a parsed --array expression: "0-999%50", "1,3,5-9:2",
// "0-99%10".
type ArraySpec struct {
	Indices []int // ascending, without repeats
	// MaxRunning is how many tasks may run at once (0: no cap).
	MaxRunning int
}

// ParseArray parses an --array expression: a comma-separated list of
// indices and ranges (A-B, or A-B:STEP), then optionally %N, the most tasks
// running at once. The error names field.
func ParseArray(field, s string) (ArraySpec, error) {
	var a ArraySpec
	if s == "" {
		return a, Invalid(field, "is empty: give indices such as 0-99, 1,3,5 or 0-999%%50")
	}
	if len(s) > 4096 {
		return a, Invalid(field, "is %d bytes long: at most 4096; use ranges (0-999) rather than lists", len(s))
	}
	list := s
	if i := strings.IndexByte(s, '%'); i >= 0 {
		list = s[:i]
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || n < 1 {
			return a, Invalid(field, "%s: after %% give how many tasks may run at once, a number of at least 1 (0-999%%50)", quote(s))
		}
		a.MaxRunning = n
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(list, ",") {
		lo, hi, step, err := parseRange(part)
		if err != nil {
			return ArraySpec{}, Invalid(field, "%s: %v", quote(part), err)
		}
		for i := lo; i <= hi; i += step {
			if !seen[i] {
				seen[i] = true
				a.Indices = append(a.Indices, i)
			}
			if len(a.Indices) > MaxArrayTasks {
				return ArraySpec{}, Invalid(field, "%s has more than %d tasks: split the work into several arrays", quote(s), MaxArrayTasks)
			}
		}
	}
	sort.Ints(a.Indices)
	if a.MaxRunning > len(a.Indices) {
		a.MaxRunning = 0 // no cap that could bind
	}
	return a, nil
}

// parseRange parses N, A-B or A-B:STEP.
func parseRange(s string) (lo, hi, step int, err error) {
	num := func(t string) (int, error) {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > MaxArrayIndex || t != strconv.Itoa(n) {
			return 0, fmt.Errorf("%s is not an index: indices are whole numbers from 0 to %d", quote(t), MaxArrayIndex)
		}
		return n, nil
	}
	step = 1
	if i := strings.IndexByte(s, ':'); i >= 0 {
		st, err := strconv.Atoi(s[i+1:])
		if err != nil || st < 1 {
			return 0, 0, 0, fmt.Errorf("the step after ':' must be a whole number of at least 1")
		}
		step, s = st, s[:i]
		if !strings.Contains(s, "-") {
			return 0, 0, 0, fmt.Errorf("a step needs a range: A-B:STEP")
		}
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = num(a); err != nil {
		return 0, 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = num(b); err != nil {
			return 0, 0, 0, err
		}
		if hi < lo {
			return 0, 0, 0, fmt.Errorf("the range ends before it starts: give A-B with A <= B")
		}
	}
	return lo, hi, step, nil
}

// String writes the indices back as ranges with the cap: "0-999%50".
func (a ArraySpec) String() string {
	var parts []string
	for i := 0; i < len(a.Indices); {
		j := i
		for j+1 < len(a.Indices) && a.Indices[j+1] == a.Indices[j]+1 {
			j++
		}
		switch {
		case j == i:
			parts = append(parts, strconv.Itoa(a.Indices[i]))
		default:
			parts = append(parts, strconv.Itoa(a.Indices[i])+"-"+strconv.Itoa(a.Indices[j]))
		}
		i = j + 1
	}
	s := strings.Join(parts, ",")
	if a.MaxRunning > 0 {
		s += "%" + strconv.Itoa(a.MaxRunning)
	}
	return s
}

// TaskRef names a job, a whole array, or one task of an array: "12",
// "40" (an array), "40_7".
type TaskRef struct {
	ID    int64
	Index int // -1: the job or the whole array
}

// ParseTaskRef parses ID or ID_INDEX.
func ParseTaskRef(field, s string) (TaskRef, error) {
	id, idx, hasIdx := strings.Cut(s, "_")
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return TaskRef{}, Invalid(field, "%s is not a job id: give a job id (12), an array (40) or one of its tasks (40_7)", quote(s))
	}
	r := TaskRef{ID: n, Index: -1}
	if hasIdx {
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i > MaxArrayIndex {
			return TaskRef{}, Invalid(field, "%s: the task index after '_' must be a whole number from 0 to %d", quote(s), MaxArrayIndex)
		}
		r.Index = i
	}
	return r, nil
}

func (r TaskRef) String() string {
	if r.Index < 0 {
		return strconv.FormatInt(r.ID, 10)
	}
	return strconv.FormatInt(r.ID, 10) + "_" + strconv.Itoa(r.Index)
}

// Dependency kinds of --after.
const (
	AfterOK    = "ok"    // the job succeeded (an array: every task did)
	AfterNotOK = "notok" // the job failed or was cancelled (an array: all ended, one or more not succeeded)
	AfterAny   = "any"   // the job ended, however (an array: every task did)
)

// Dependency is one condition of --after: KIND:REF.
type Dependency struct {
	Kind string  `json:"kind"`
	On   TaskRef `json:"-"`
}

// MaxDependencies bounds the conditions of one --after.
const MaxDependencies = 100

// ParseAfter parses an --after list: "ok:12,any:40,notok:40_7". A bare
// ID means ok:ID.
func ParseAfter(field, s string) ([]Dependency, error) {
	if s == "" {
		return nil, nil
	}
	var out []Dependency
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		kind, ref, ok := strings.Cut(part, ":")
		if !ok {
			kind, ref = AfterOK, part
		}
		switch kind {
		case AfterOK, AfterNotOK, AfterAny:
		default:
			return nil, Invalid(field, "%s: %s is not a kind of dependency: use ok:ID, notok:ID or any:ID", quote(part), quote(kind))
		}
		r, err := ParseTaskRef(field, ref)
		if err != nil {
			return nil, err
		}
		d := Dependency{Kind: kind, On: r}
		if k := d.String(); !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
		if len(out) > MaxDependencies {
			return nil, Invalid(field, "has more than %d conditions: depend on an array rather than on each of its tasks", MaxDependencies)
		}
	}
	return out, nil
}

func (d Dependency) String() string { return d.Kind + ":" + d.On.String() }

// FormatAfter writes dependencies back as an --after list.
func FormatAfter(ds []Dependency) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}
