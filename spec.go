package dspool

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dspool/dspool/internal/lazyregexp"
)

// JobSpec is what a user submits. Zero values mean the defaults filled in by
// Normalize.
type JobSpec struct {
	Pool           string            `json:"pool,omitempty"`
	Team           string            `json:"team,omitempty"` // default: the user's one team that may use the pool
	Name           string            `json:"name,omitempty"`
	CPUs           MilliCPU          `json:"cpus,omitempty"`
	Memory         Bytes             `json:"memory,omitempty"`
	GPUs           int               `json:"gpus,omitempty"`
	GPUType        string            `json:"gpu_type,omitempty"`   // each GPU's model (GPUWant.Type)
	GPUMemory      Bytes             `json:"gpu_memory,omitempty"` // each GPU's least memory
	TimeLimit      Duration          `json:"time_limit,omitempty"`
	Retries        int               `json:"retries,omitempty"`
	Priority       *int              `json:"priority,omitempty"` // higher first; nil: the default of the limits (JobPriorityBounds)
	Env            map[string]string `json:"env,omitempty"`
	Workdir        string            `json:"workdir,omitempty"`
	Command        []string          `json:"command"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	// Secrets the job asks for, by name; their values reach only the
	// attempt, at its start.
	Secrets []SecretUse `json:"secrets,omitempty"`
	// Array makes the submission an array of tasks ("0-999%50"); Sweep
	// gives each task variables of its own, one row per task (with Array,
	// one row per index, in order; Array may then be only "%N").
	Array string              `json:"array,omitempty"`
	Sweep []map[string]string `json:"sweep,omitempty"`
	// After holds the job (or every task) until other jobs end:
	// "ok:12,any:40,notok:40_7".
	After string `json:"after,omitempty"`
	// Hold queues the job held: it runs once released.
	Hold bool `json:"hold,omitempty"`
	// Preemptible lets a job of a higher score evict the job, which then
	// waits again in the queue; its pool must allow it (Pool.Preemption).
	Preemptible bool `json:"preemptible,omitempty"`

	// Filled in by Normalize from Array, Sweep and After.
	Tasks *ArraySpec   `json:"-"`
	Deps  []Dependency `json:"-"`
	// Image runs the job in a container (docs/decisions/0026-images.md):
	// the name of an image present on the node, or a file on the share
	// (ImageIsFile) that the node loads. Empty: the pool's image, if any.
	Image string `json:"image,omitempty"`
}

// Defaults and bounds of a job.
const (
	DefaultPool      = "default"
	DefaultJobCPUs   = MilliCPU(1000)
	DefaultJobMemory = Bytes(512 << 20)
	MaxGPUs          = 256
	// MinMemory is the least memory a job or node may have: less is
	// almost surely a size given without its unit.
	MinMemory    = Bytes(1 << 20)
	MaxRetries   = 100
	MaxPriority  = 1000
	MaxTimeLimit = 365 * 24 * time.Hour
	MaxEnv       = 256
	MaxArgsBytes = 128 << 10
	MaxNameLen   = 128
	MaxPathLen   = 1024
)

// The patterns are compiled at their first use, and leave their bounds of
// length to the code: regexp compiles a counted repetition ({0,62}) into as
// many copies (decision 0038).
var nameRE = lazyregexp.New(`^[a-z][a-z0-9-]*$`)
var envNameRE = lazyregexp.New(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidName reports whether s can name a pool or a user: lowercase letters,
// digits and '-', starting with a letter, at most 63 characters.
func ValidName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }

// ValidateName returns an EInvalid error naming field when s is not a valid
// pool or user name.
func ValidateName(field, s string) error {
	if !ValidName(s) {
		return Invalid(field, "%s is not a valid name: use 1-63 lowercase letters, digits and '-', starting with a letter", quote(s))
	}
	return nil
}

// reservedEnv are variables a job may not set: they change how the loader
// or shells behave, or they are set by dspool itself.
var reservedEnv = map[string]bool{
	"BASH_ENV": true, "ENV": true, "IFS": true, "SHELLOPTS": true, "BASHOPTS": true, "PS4": true,
	"HOME": true, "USER": true, "LOGNAME": true, "CUDA_VISIBLE_DEVICES": true, "NVIDIA_VISIBLE_DEVICES": true,
}

// ValidateEnvName checks that k may be a job's variable: a valid name that
// dspool does not set itself.
func ValidateEnvName(k string) error {
	if !envNameRE.MatchString(k) || len(k) > 256 {
		return Invalid("env", "%s is not a valid variable name: use letters, digits and '_', not starting with a digit", quote(k))
	}
	if reservedEnvName(k) {
		return Invalid("env."+k, "is set by dspool or changes how programs load, so a job cannot set it")
	}
	return nil
}

func reservedEnvName(k string) bool {
	return reservedEnv[k] || strings.HasPrefix(k, "LD_") || strings.HasPrefix(k, "DSPOOL_") ||
		strings.HasPrefix(k, "BASH_FUNC_") || strings.HasPrefix(k, "GCONV_")
}

// GPUWant is what the job asks of each of its GPUs.
func (s *JobSpec) GPUWant() GPUWant { return GPUWant{Type: s.GPUType, Memory: s.GPUMemory} }

// PriorityOrZero returns the priority given, or 0 when none was.
func (s *JobSpec) PriorityOrZero() int {
	if s.Priority == nil {
		return 0
	}
	return *s.Priority
}

// Normalize fills defaults and validates s, returning an EInvalid error that
// names the first offending field.
func (s *JobSpec) Normalize() error {
	if s.Pool == "" {
		s.Pool = DefaultPool
	}
	if err := ValidateName("pool", s.Pool); err != nil {
		return err
	}
	if s.Team != "" {
		if err := ValidateName("team", s.Team); err != nil {
			return err
		}
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		return Invalid("command", "is empty: give the program to run and its arguments, e.g. `dspool job submit -- python train.py`")
	}
	total := 0
	for i, a := range s.Command {
		if err := checkData(fmt.Sprintf("command[%d]", i), a, MaxArgsBytes); err != nil {
			return err
		}
		total += len(a) + 1
	}
	if s.Name == "" {
		s.Name = path.Base(s.Command[0])
		if len(s.Name) > MaxNameLen {
			s.Name = s.Name[:MaxNameLen]
		}
		if !utf8.ValidString(s.Name) {
			s.Name = strings.ToValidUTF8(s.Name, "?")
		}
	}
	if err := ValidateText("name", s.Name, MaxNameLen); err != nil {
		return err
	}
	if s.CPUs == 0 {
		s.CPUs = DefaultJobCPUs
	}
	if s.CPUs < 0 || s.CPUs > MaxCPUs*1000 {
		return Invalid("cpus", "%s is out of range: give a number of cpus between 0.001 and %d", s.CPUs, MaxCPUs)
	}
	if s.Memory == 0 {
		s.Memory = DefaultJobMemory
	}
	if s.Memory < MinMemory || s.Memory > MaxBytes {
		return Invalid("memory", "%d bytes is out of range: give a size between 1MiB and 1EiB with its unit, e.g. 4GiB", s.Memory)
	}
	if s.GPUs < 0 || s.GPUs > MaxGPUs {
		return Invalid("gpus", "%d is out of range: give 0 to %d gpus", s.GPUs, MaxGPUs)
	}
	s.GPUType = strings.TrimSpace(s.GPUType)
	if err := s.GPUWant().Validate("", s.GPUs); err != nil {
		return err
	}
	if s.TimeLimit < 0 || time.Duration(s.TimeLimit) > MaxTimeLimit {
		return Invalid("time_limit", "%s is out of range: give a positive duration up to 8760h, or none", time.Duration(s.TimeLimit))
	}
	if s.TimeLimit != 0 && time.Duration(s.TimeLimit) < time.Second {
		return Invalid("time_limit", "%s is too short: give at least 1s", time.Duration(s.TimeLimit))
	}
	if s.Retries < 0 || s.Retries > MaxRetries {
		return Invalid("retries", "%d is out of range: give 0 to %d", s.Retries, MaxRetries)
	}
	if p := s.Priority; p != nil && (*p < -MaxPriority || *p > MaxPriority) {
		return Invalid("priority", "%d is out of range: give -%d to %d", *p, MaxPriority, MaxPriority)
	}
	if len(s.Env) > MaxEnv {
		return Invalid("env", "has %d variables: at most %d", len(s.Env), MaxEnv)
	}
	for _, k := range sortedKeys(s.Env) {
		if err := ValidateEnvName(k); err != nil {
			return err
		}
		if err := checkData("env."+k, s.Env[k], MaxArgsBytes); err != nil {
			return err
		}
		total += len(k) + len(s.Env[k]) + 2
	}
	if total > MaxArgsBytes {
		return Invalid("command", "command and env together are %d bytes: at most %d", total, MaxArgsBytes)
	}
	if err := normalizeSecrets(s.Secrets, s.Env); err != nil {
		return err
	}
	if s.Workdir != "" {
		if err := ValidateRelPath("workdir", s.Workdir); err != nil {
			return err
		}
		s.Workdir = path.Clean(s.Workdir)
	}
	if err := ValidateImage("image", s.Image); err != nil {
		return err
	}
	if s.Image != "" && ImageIsFile(s.Image) {
		s.Image = path.Clean(s.Image)
	}
	if err := ValidateText("idempotency_key", s.IdempotencyKey, 128); err != nil {
		return err
	}
	if err := s.normalizeArray(); err != nil {
		return err
	}
	deps, err := ParseAfter("after", s.After)
	if err != nil {
		return err
	}
	s.Deps, s.After = deps, FormatAfter(deps)
	return nil
}

// normalizeArray parses Array and checks Sweep's rows.
func (s *JobSpec) normalizeArray() error {
	s.Tasks = nil
	if s.Array == "" && len(s.Sweep) == 0 {
		return nil
	}
	var a ArraySpec
	switch {
	case len(s.Sweep) > 0 && (s.Array == "" || strings.HasPrefix(s.Array, "%")):
		if len(s.Sweep) > MaxArrayTasks {
			return Invalid("sweep", "has %d rows: at most %d tasks in one array", len(s.Sweep), MaxArrayTasks)
		}
		if s.Array != "" {
			n, err := strconv.Atoi(s.Array[1:])
			if err != nil || n < 1 {
				return Invalid("array", "%s: after %% give how many tasks may run at once, a number of at least 1 (%%50)", quote(s.Array))
			}
			a.MaxRunning = n
		}
		a.Indices = make([]int, len(s.Sweep))
		for i := range a.Indices {
			a.Indices[i] = i
		}
		if a.MaxRunning >= len(a.Indices) {
			a.MaxRunning = 0
		}
	default:
		var err error
		if a, err = ParseArray("array", s.Array); err != nil {
			return err
		}
		if len(s.Sweep) > 0 && len(s.Sweep) != len(a.Indices) {
			return Invalid("sweep", "has %d rows for %d indices: give one row per index, or leave out the indices (--array %%N only caps the tasks running at once)", len(s.Sweep), len(a.Indices))
		}
	}
	for i, row := range s.Sweep {
		if len(row)+len(s.Env) > MaxEnv {
			return Invalid(fmt.Sprintf("sweep[%d]", i), "has %d variables with the job's own: at most %d", len(row)+len(s.Env), MaxEnv)
		}
		size := 0
		for k, v := range row {
			if err := ValidateEnvName(k); err != nil {
				return Invalid(fmt.Sprintf("sweep[%d]", i), "column %s", err.(*Error).Message)
			}
			if err := checkData(fmt.Sprintf("sweep[%d].%s", i, k), v, MaxArgsBytes); err != nil {
				return err
			}
			size += len(k) + len(v) + 2
		}
		if size > MaxArgsBytes {
			return Invalid(fmt.Sprintf("sweep[%d]", i), "is %d bytes: at most %d", size, MaxArgsBytes)
		}
	}
	s.Tasks = &a
	s.Array = a.String()
	return nil
}

// MaxImageLen bounds an image's name or file path.
const MaxImageLen = 512

var imageRefRE = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`)

// ImageIsFile reports whether an image is given as a file (an archive
// made by podman save or docker save) rather than by name: its name ends
// in .tar, .tar.gz or .tgz.
func ImageIsFile(image string) bool {
	return strings.HasSuffix(image, ".tar") || strings.HasSuffix(image, ".tar.gz") || strings.HasSuffix(image, ".tgz")
}

// ValidateImage checks an image as a job or a pool names it: empty (none),
// a file on the share (a path relative to a home, or an absolute path on
// the nodes, without ".."), or the name of an image on the node
// (registry/name:tag or name@sha256:digest).
func ValidateImage(field, image string) error {
	if image == "" {
		return nil
	}
	if err := ValidateText(field, image, MaxImageLen); err != nil {
		return err
	}
	if ImageIsFile(image) {
		for _, part := range strings.Split(image, "/") {
			if part == ".." {
				return Invalid(field, "%s leaves the directory it is in: remove the '..'", quote(image))
			}
		}
		return nil
	}
	if !imageRefRE.MatchString(image) {
		return Invalid(field, "%s is neither an image's name (e.g. localhost/torch:2.3) nor an image file (.tar, .tar.gz or .tgz, from podman save)", quote(image))
	}
	return nil
}

// ValidateRelPath checks that p is a relative path that stays beneath the
// directory it is resolved in: no "..", not absolute, no NUL.
func ValidateRelPath(field, p string) error {
	if err := ValidateText(field, p, MaxPathLen); err != nil {
		return err
	}
	if path.IsAbs(p) {
		return Invalid(field, "%s is absolute: give a path relative to your home directory on the share", quote(p))
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return Invalid(field, "%s leaves your home directory: remove the '..'", quote(p))
		}
	}
	return nil
}

// ValidateText checks a line of text that people other than its author see:
// a job's, token's or label's name, an email address. It must be valid UTF-8
// of at most max bytes with no NUL, control character, line or paragraph
// separator, or format character: a bidi override (U+202E) or a zero-width
// space would make the text read differently from what it is, in a list in
// the terminal or on the web page.
func ValidateText(field, s string, max int) error {
	if err := checkData(field, s, max); err != nil {
		return err
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return Invalid(field, "contains the control character %U: use printable text on one line", r)
		case unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			return Invalid(field, "contains the invisible character %U, which changes how the text around it is shown: remove it", r)
		}
	}
	return nil
}

// checkData checks text handed to a program as it is (an argument, an
// environment variable, a script): valid UTF-8, no NUL, at most max bytes.
func checkData(field, s string, max int) error {
	if len(s) > max {
		return Invalid(field, "is %d bytes long: at most %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return Invalid(field, "is not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Invalid(field, "contains a NUL byte")
	}
	return nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
