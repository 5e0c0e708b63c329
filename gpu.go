package dspool

import (
	"fmt"
	"strings"
)

// GPUWant is what a job or session asks of each of its GPUs beyond their
// number: a model and the least memory. The zero value takes any GPU.
type GPUWant struct {
	// Type is matched, case-insensitively, against a word of the GPU's
	// name as nvidia-smi gives it ("a100" in "NVIDIA A100-SXM4-40GB"), or
	// the whole name; a MIG instance's profile ("1g.10gb") is a word of
	// its name.
	Type   string `json:"gpu_type,omitempty"`
	Memory Bytes  `json:"gpu_memory,omitempty"`
}

// MaxGPUTypeLen bounds a GPU type.
const MaxGPUTypeLen = 64

// GPUMemorySlack is how far below the asked memory a GPU's may be and still
// count: nvidia-smi reports what the driver leaves usable (an H100 80GB
// shows 79.6GiB), and users ask for the size the model is sold as.
const GPUMemorySlack = 2 // percent

// Any reports whether w takes any GPU.
func (w GPUWant) Any() bool { return w.Type == "" && w.Memory == 0 }

// Validate checks w, naming the field (prefix+"gpu_type" or
// prefix+"gpu_memory") that is wrong; gpus is how many GPUs come with it.
func (w GPUWant) Validate(prefix string, gpus int) error {
	if w.Type != "" {
		if len(w.Type) > MaxGPUTypeLen {
			return Invalid(prefix+"gpu_type", "is %d bytes long: at most %d", len(w.Type), MaxGPUTypeLen)
		}
		for _, r := range w.Type {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == ' ') {
				return Invalid(prefix+"gpu_type", "%s is not a GPU model: use letters, digits, '-', '.' and '_', e.g. a100, h100 or 1g.10gb", quote(w.Type))
			}
		}
	}
	if w.Memory < 0 || w.Memory > MaxBytes || w.Memory > 0 && w.Memory < MinMemory {
		return Invalid(prefix+"gpu_memory", "%d bytes is out of range: give a size with its unit, e.g. 40GiB", int64(w.Memory))
	}
	if !w.Any() && gpus == 0 {
		f := prefix + "gpu_type"
		if w.Type == "" {
			f = prefix + "gpu_memory"
		}
		return Invalid(f, "applies to the GPUs asked for, and none are: add --gpus N")
	}
	return nil
}

// Fits reports whether g is a GPU w takes.
func (w GPUWant) Fits(g GPU) bool {
	if w.Memory > 0 && int64(g.Memory)*100 < int64(w.Memory)*(100-GPUMemorySlack) {
		return false
	}
	if w.Type == "" {
		return true
	}
	t := strings.ToLower(strings.TrimSpace(w.Type))
	name := strings.ToLower(g.Name)
	if name == t {
		return true
	}
	for _, word := range strings.FieldsFunc(name, func(r rune) bool { return r == ' ' || r == '-' || r == '_' || r == '(' || r == ')' }) {
		if word == t {
			return true
		}
	}
	return false
}

func (w GPUWant) String() string {
	var parts []string
	if w.Type != "" {
		parts = append(parts, "of type "+w.Type)
	}
	if w.Memory > 0 {
		parts = append(parts, fmt.Sprintf("with at least %s", w.Memory))
	}
	return strings.Join(parts, " ")
}

// CountFits returns how many of gpus w takes.
func (w GPUWant) CountFits(gpus []GPU) int {
	n := 0
	for _, g := range gpus {
		if w.Fits(g) {
			n++
		}
	}
	return n
}

// GPUModels names the models among gpus, each once, in order of first
// appearance: what a message says a pool has.
func GPUModels(gpus []GPU) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range gpus {
		m := g.Name
		if g.Memory > 0 {
			m = fmt.Sprintf("%s (%s)", g.Name, g.Memory)
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}
