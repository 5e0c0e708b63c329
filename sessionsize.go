package dspool

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SessionSize is what an interactive session holds on its node: a profile
// a pool defines (sessions.profiles: small, large, gpu), or a size asked
// for at login (`ssh USER+POOL+8cpu-64gib-1gpu-4h@pool`, `dspool shell
// --cpus 8`). Its cpus, memory and GPUs bound what the session's processes
// may use, as a job's do.
type SessionSize struct {
	// Name is the profile's name; empty for a size asked for inline (its
	// Key names it then).
	Name      string   `json:"name,omitempty" yaml:"name"`
	CPUs      MilliCPU `json:"cpus,omitempty" yaml:"cpus"`
	Memory    Bytes    `json:"memory,omitempty" yaml:"memory"`
	GPUs      int      `json:"gpus,omitempty" yaml:"gpus"`
	GPUType   string   `json:"gpu_type,omitempty" yaml:"gpu_type"`
	GPUMemory Bytes    `json:"gpu_memory,omitempty" yaml:"gpu_memory"`
	// Time is the longest the session may last (0: until its last
	// connection closes).
	Time Duration `json:"time,omitempty" yaml:"time"`
	// Description is shown where users choose a profile.
	Description string `json:"description,omitempty" yaml:"description"`
}

// MaxProfiles bounds a pool's session profiles.
const MaxProfiles = 32

// GPUWant is what the session asks of each of its GPUs.
func (z SessionSize) GPUWant() GPUWant { return GPUWant{Type: z.GPUType, Memory: z.GPUMemory} }

// Key names the size in a login: the profile's name, or the inline form
// ("8cpu-64gib-1gpu-4h"); "" for the pool's default size.
func (z SessionSize) Key() string {
	if z.Name != "" {
		return z.Name
	}
	var parts []string
	if z.CPUs > 0 {
		parts = append(parts, strconv.FormatInt(int64(z.CPUs+999)/1000, 10)+"cpu")
	}
	if z.Memory > 0 {
		parts = append(parts, strconv.FormatInt(int64(z.Memory)>>20, 10)+"mib")
	}
	if z.GPUs > 0 {
		parts = append(parts, strconv.Itoa(z.GPUs)+"gpu")
	}
	if z.Time > 0 {
		parts = append(parts, strconv.FormatInt(int64(time.Duration(z.Time)/time.Minute), 10)+"min")
	}
	return strings.Join(parts, "-")
}

// String says what the session holds: "8 cpus, 64GiB memory, 1 gpu of
// type a100, for 4h0m0s".
func (z SessionSize) String() string {
	s := fmt.Sprintf("%s, %s memory", Plural(z.CPUs, "cpu"), z.Memory)
	if z.GPUs > 0 {
		s += ", " + Plural(z.GPUs, "gpu")
		if w := z.GPUWant(); !w.Any() {
			s += " " + w.String()
		}
	}
	if z.Time > 0 {
		s += ", for at most " + time.Duration(z.Time).String()
	}
	return s
}

// ParseSessionSize reads a size asked for inline, as a login names it:
// parts joined by '-', each a number and its unit: cpu (cpus), gib or mib
// (memory), gpu (GPUs), h or min (the longest the session may last);
// "8cpu-64gib-1gpu-4h". It reports false when s is not of that form (it
// may then name a profile).
func ParseSessionSize(s string) (SessionSize, bool, error) {
	var z SessionSize
	seen := map[string]bool{}
	for _, part := range strings.Split(s, "-") {
		i := 0
		for i < len(part) && part[i] >= '0' && part[i] <= '9' {
			i++
		}
		if i == 0 || i > 9 {
			return SessionSize{}, false, nil
		}
		n, _ := strconv.ParseInt(part[:i], 10, 64)
		unit := part[i:]
		field := map[string]string{"cpu": "cpus", "gib": "memory", "mib": "memory", "gpu": "gpus", "h": "time", "min": "time"}[unit]
		if field == "" {
			return SessionSize{}, false, nil
		}
		if seen[field] {
			return SessionSize{}, true, Invalid("size", "%s gives the %s twice: give each of cpu, gib, gpu and h once, e.g. 8cpu-64gib-1gpu-4h", quote(s), field)
		}
		seen[field] = true
		if unit == "h" && n > int64(MaxTimeLimit/time.Hour) || unit == "min" && n > int64(MaxTimeLimit/time.Minute) || n > MaxCPUs*1000 && unit != "mib" {
			return SessionSize{}, true, Invalid("size", "%s asks for %s beyond any node or time limit: ask for less", quote(s), quote(part))
		}
		switch unit {
		case "cpu":
			z.CPUs = MilliCPU(n * 1000)
		case "gib":
			z.Memory = Bytes(n) << 30
		case "mib":
			z.Memory = Bytes(n) << 20
		case "gpu":
			z.GPUs = int(n)
		case "h":
			z.Time = Duration(time.Duration(n) * time.Hour)
		case "min":
			z.Time = Duration(time.Duration(n) * time.Minute)
		}
	}
	return z, true, nil
}

// validate checks z, naming its fields under prefix, against the pool's
// node size.
func (z *SessionSize) validate(prefix string, node NodeSize) error {
	if z.CPUs < 0 || z.CPUs > node.CPUs {
		return Invalid(prefix+"cpus", "%s is more than a node of the pool has (%s): ask for at most that", Plural(z.CPUs, "cpu"), node.CPUs)
	}
	if z.Memory < 0 || z.Memory > node.Memory || z.Memory > 0 && z.Memory < MinMemory {
		return Invalid(prefix+"memory", "%s is not between 1MiB and the %s of a node of the pool", z.Memory, node.Memory)
	}
	if z.GPUs < 0 || z.GPUs > node.GPUs {
		return Invalid(prefix+"gpus", "%d is more than a node of the pool has (%d): ask for at most that", z.GPUs, node.GPUs)
	}
	z.GPUType = strings.TrimSpace(z.GPUType)
	if err := z.GPUWant().Validate(prefix, z.GPUs); err != nil {
		return err
	}
	if z.Time < 0 || time.Duration(z.Time) > MaxTimeLimit || z.Time > 0 && time.Duration(z.Time) < time.Second {
		return Invalid(prefix+"time", "%s is not between 1s and 8760h", time.Duration(z.Time))
	}
	return ValidateText(prefix+"description", z.Description, 256)
}

// normalizeProfiles checks the pool's session profiles: each has a name of
// its own that reads as no inline size, and fits a node.
func (s *SessionSpec) normalizeProfiles(prefix string, node NodeSize) error {
	if len(s.Profiles) > MaxProfiles {
		return Invalid(prefix+"sessions.profiles", "has %d profiles: at most %d", len(s.Profiles), MaxProfiles)
	}
	seen := map[string]bool{}
	for i := range s.Profiles {
		z := &s.Profiles[i]
		f := fmt.Sprintf("%ssessions.profiles[%d].", prefix, i)
		if err := ValidateName(f+"name", z.Name); err != nil {
			return err
		}
		if _, inline, _ := ParseSessionSize(z.Name); inline || seen[z.Name] {
			return Invalid(f+"name", "%s is taken or reads as a size (8cpu-64gib): name profiles by what they are for, e.g. small, large, gpu", quote(z.Name))
		}
		seen[z.Name] = true
		if z.CPUs == 0 {
			z.CPUs = s.CPUs
		}
		if z.Memory == 0 {
			z.Memory = s.Memory
		}
		if err := z.validate(f, node); err != nil {
			return err
		}
	}
	return nil
}

// SessionSize returns the size a login or a request names in the pool:
// "" the pool's own (sessions.cpus and memory), a profile's name, or a
// size inline (ParseSessionSize), the cpus and memory it leaves out the
// pool's. An error names the field "size" and says what the pool offers.
func (p *Pool) SessionSize(name string) (SessionSize, error) {
	set := p.SessionSettings()
	if name == "" {
		return SessionSize{CPUs: set.CPUs, Memory: set.Memory}, nil
	}
	for _, z := range set.Profiles {
		if z.Name == name {
			return z, nil
		}
	}
	z, inline, err := ParseSessionSize(name)
	if err != nil {
		return SessionSize{}, err
	}
	if !inline {
		return SessionSize{}, Invalid("size", "pool %s has no session profile %s: %s", p.Name, quote(name), p.ProfileHint())
	}
	if z.CPUs == 0 {
		z.CPUs = set.CPUs
	}
	if z.Memory == 0 {
		z.Memory = set.Memory
	}
	if err := z.validate("", p.Node); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return SessionSize{}, Invalid("size", "%s: %s", e.Field, e.Message)
		}
		return SessionSize{}, err
	}
	return z, nil
}

// ProfileHint says what sizes a pool's sessions may have.
func (p *Pool) ProfileHint() string {
	set := p.SessionSettings()
	var names []string
	for _, z := range set.Profiles {
		names = append(names, z.Name)
	}
	hint := "ask for a size inline, e.g. 8cpu-64gib-1gpu-4h"
	if len(names) > 0 {
		return "its profiles are " + strings.Join(names, ", ") + "; or " + hint
	}
	return "it defines no profiles; " + hint
}
