package dspool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Work is a kind of work a pool takes.
type Work string

const (
	WorkBatch       Work = "batch"
	WorkInteractive Work = "interactive"
)

// Providers every control plane knows. Others (slurm, ...) are registered
// by the binary's wiring (autoscale.Registry); the domain package knows
// only their names and keeps their settings as it was given them.
const (
	ProviderLocal  = "local"
	ProviderStatic = "static"
)

// ProviderSpec is a pool's provider: its name and the settings that
// provider defines (a Slurm partition, an image). A pool file gives it as a
// name (`provider: local`) or as a block (`provider: {name: slurm,
// partition: debug}`); it is written back as a name when it has no
// settings, so pools stored before providers had settings read the same.
type ProviderSpec struct {
	Name string
	// Settings are the block's fields but name, as JSON values; the
	// provider's registration checks them (autoscale.Registry.Check).
	Settings map[string]json.RawMessage
}

// Provider returns the spec of provider name without settings.
func Provider(name string) ProviderSpec { return ProviderSpec{Name: name} }

func (s ProviderSpec) String() string { return s.Name }

// MarshalJSON writes the name alone when there are no settings.
func (s ProviderSpec) MarshalJSON() ([]byte, error) {
	if len(s.Settings) == 0 {
		return json.Marshal(s.Name)
	}
	m := make(map[string]json.RawMessage, len(s.Settings)+1)
	for k, v := range s.Settings {
		m[k] = v
	}
	name, _ := json.Marshal(s.Name)
	m["name"] = name
	return json.Marshal(m) // sorted keys: a stable spec
}

// UnmarshalJSON reads a name or a block with a name.
func (s *ProviderSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*s = ProviderSpec{}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &s.Name)
	}
	var m map[string]json.RawMessage
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &m) != nil {
		return fmt.Errorf("must be a provider's name (local) or a mapping with its name and settings ({name: slurm, partition: debug})")
	}
	raw, ok := m["name"]
	if !ok || json.Unmarshal(raw, &s.Name) != nil || s.Name == "" {
		return fmt.Errorf("a provider block needs name: the provider's name, e.g. {name: slurm, partition: debug}")
	}
	delete(m, "name")
	if len(m) > 0 {
		s.Settings = m
	}
	return nil
}

// SettingNames returns the names of the settings, sorted.
func (s ProviderSpec) SettingNames() []string {
	names := make([]string, 0, len(s.Settings))
	for k := range s.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// NodeSize is the size of every node of a pool.
type NodeSize struct {
	CPUs   MilliCPU `json:"cpus" yaml:"cpus"`
	Memory Bytes    `json:"memory" yaml:"memory"`
	GPUs   int      `json:"gpus,omitempty" yaml:"gpus"`
}

// Pool is a named set of identical nodes.
type Pool struct {
	Name     string       `json:"name" yaml:"name"`
	Provider ProviderSpec `json:"provider" yaml:"provider"`
	Node     NodeSize     `json:"node" yaml:"node"`
	// Count is how many nodes the provider keeps: agent processes for
	// local, the expected number of joined machines for static.
	Count int    `json:"count" yaml:"count"`
	Work  []Work `json:"work" yaml:"work"`
	// Setup runs once as root with /bin/sh when a node starts, before it
	// takes work; a node whose setup fails is marked failed with its output.
	Setup        string   `json:"setup,omitempty" yaml:"setup"`
	SetupTimeout Duration `json:"setup_timeout,omitempty" yaml:"setup_timeout"`
	OutputLimit  Bytes    `json:"output_limit,omitempty" yaml:"output_limit"`
	// Image is the image the pool's jobs run in when they name none: an
	// image's name on the nodes, or a file on the share (a path relative
	// to the share's root, or an absolute path on the nodes).
	Image string `json:"image,omitempty" yaml:"image"`
	// ImageNetwork is the network of jobs in an image: host (the node's,
	// as jobs without an image have; the default) or none (loopback only).
	// Empty means host.
	ImageNetwork string `json:"image_network,omitempty" yaml:"image_network"`
	// Sessions configures interactive sessions in pools that take them.
	Sessions *SessionSpec `json:"sessions,omitempty" yaml:"sessions"`
	// Autoscale makes the pool grow and shrink with its work; without it
	// the pool keeps Count nodes.
	Autoscale *Autoscale `json:"autoscale,omitempty" yaml:"autoscale"`
	// Teams may use the pool; empty: every user may.
	Teams []string `json:"teams,omitempty" yaml:"teams"`
	// QueueNames says whether `dspool queue` shows users other users'
	// names on the pool's queued work: shown (the default) or hidden.
	// Admins always see them.
	QueueNames string `json:"queue_names,omitempty" yaml:"queue_names"`
	// PricePerNodeHour prices the pool's node time in `dspool usage`.
	PricePerNodeHour float64           `json:"price_per_node_hour,omitempty" yaml:"price_per_node_hour"`
	Labels           map[string]string `json:"labels,omitempty" yaml:"labels"`
	CreatedAt        time.Time         `json:"created_at,omitempty" yaml:"-"`
	UpdatedAt        time.Time         `json:"updated_at,omitempty" yaml:"-"`
}

// The networks a pool's jobs in images may have.
const (
	ImageNetworkHost = "host"
	ImageNetworkNone = "none"
)

// The settings of Pool.QueueNames.
const (
	QueueNamesShown  = "shown"
	QueueNamesHidden = "hidden"
)

// Pool defaults and bounds.
const (
	MaxPoolCount        = 10000
	MaxSetupBytes       = 64 << 10
	DefaultSetupTimeout = 10 * time.Minute
	DefaultOutputLimit  = Bytes(1 << 30)
	MaxLabels           = 64
)

// Takes reports whether the pool accepts work w.
func (p *Pool) Takes(w Work) bool {
	for _, x := range p.Work {
		if x == w {
			return true
		}
	}
	return false
}

// Normalize fills defaults and validates p. prefix is prepended to field
// names ("pools[1].") so errors point into the file the user wrote.
func (p *Pool) Normalize(prefix string) error {
	f := func(name string) string { return prefix + name }
	if err := ValidateName(f("name"), p.Name); err != nil {
		return err
	}
	// Which providers exist, and what their settings may be, is the
	// control plane's registry's to say (autoscale.Registry.Check).
	if p.Provider.Name == "" {
		if len(p.Provider.Settings) > 0 {
			return Invalid(f("provider.name"), "is missing: name the provider whose settings these are")
		}
		p.Provider.Name = ProviderLocal
	}
	if err := ValidateName(f("provider"), p.Provider.Name); err != nil {
		return Invalid(f("provider"), "%s is not a provider's name", quote(p.Provider.Name))
	}
	if p.Node.CPUs <= 0 || p.Node.CPUs > MaxCPUs*1000 {
		return Invalid(f("node.cpus"), "must be between 0.001 and %d", MaxCPUs)
	}
	if p.Node.Memory < MinMemory || p.Node.Memory > MaxBytes {
		return Invalid(f("node.memory"), "%d bytes is out of range: give a size between 1MiB and 1EiB with its unit, e.g. 16GiB", p.Node.Memory)
	}
	if p.Node.GPUs < 0 || p.Node.GPUs > MaxGPUs {
		return Invalid(f("node.gpus"), "must be between 0 and %d", MaxGPUs)
	}
	if p.Count < 0 || p.Count > MaxPoolCount {
		return Invalid(f("count"), "must be between 0 and %d", MaxPoolCount)
	}
	if len(p.Work) == 0 {
		p.Work = []Work{WorkBatch, WorkInteractive}
	}
	seen := map[Work]bool{}
	for i, w := range p.Work {
		if w != WorkBatch && w != WorkInteractive {
			return Invalid(fmt.Sprintf("%swork[%d]", prefix, i), "%s is not a kind of work: use batch or interactive", quote(string(w)))
		}
		if seen[w] {
			return Invalid(fmt.Sprintf("%swork[%d]", prefix, i), "%s is listed twice", w)
		}
		seen[w] = true
	}
	if err := checkData(f("setup"), p.Setup, MaxSetupBytes); err != nil {
		return err
	}
	if p.SetupTimeout < 0 || time.Duration(p.SetupTimeout) > 24*time.Hour {
		return Invalid(f("setup_timeout"), "must be between 1s and 24h")
	}
	if p.SetupTimeout == 0 {
		p.SetupTimeout = Duration(DefaultSetupTimeout)
	}
	if p.OutputLimit < 0 || p.OutputLimit > MaxBytes {
		return Invalid(f("output_limit"), "must be a size up to 1 EiB")
	}
	if p.OutputLimit == 0 {
		p.OutputLimit = DefaultOutputLimit
	}
	if err := ValidateImage(f("image"), p.Image); err != nil {
		return err
	}
	switch p.QueueNames {
	case "", QueueNamesShown, QueueNamesHidden: // "": shown
	default:
		return Invalid(f("queue_names"), "%s is not a setting of queue names: use shown or hidden", quote(p.QueueNames))
	}
	switch p.ImageNetwork {
	case "", ImageNetworkHost, ImageNetworkNone: // "": host
	default:
		return Invalid(f("image_network"), "%s is not a network for images: use host or none", quote(p.ImageNetwork))
	}
	if p.Takes(WorkInteractive) {
		if p.Sessions == nil {
			p.Sessions = &SessionSpec{}
		}
		if err := p.Sessions.normalize(prefix, p.Node); err != nil {
			return err
		}
	} else if p.Sessions != nil {
		return Invalid(f("sessions"), "pool %s does not take interactive work: add interactive to work, or remove sessions", p.Name)
	}
	if p.Autoscale != nil {
		if err := p.Autoscale.normalize(prefix, p); err != nil {
			return err
		}
	}
	if err := p.normalizeTeams(prefix); err != nil {
		return err
	}
	if math.IsNaN(p.PricePerNodeHour) || p.PricePerNodeHour < 0 || p.PricePerNodeHour > 1e6 {
		return Invalid(f("price_per_node_hour"), "must be a number between 0 and 1000000")
	}
	return ValidateLabels(f("labels"), p.Labels)
}

// ValidateLabels checks the labels of a pool or a node, which `pool show`
// and `node list` show to everyone.
func ValidateLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return Invalid(field, "has %d labels: at most %d", len(labels), MaxLabels)
	}
	for _, k := range sortedKeys(labels) {
		if err := ValidateText(field, k, 63); err != nil || k == "" {
			return Invalid(field, "label name %s must be 1-63 printable characters", quote(k))
		}
		if err := ValidateText(field+"."+k, labels[k], 253); err != nil {
			return err
		}
	}
	return nil
}

// Scales reports whether the autoscaler sizes the pool.
func (p *Pool) Scales() bool { return p.Autoscale != nil }

// Fits returns an EInvalid error naming the field when a job of the given
// size can never run on a node of this pool (every dimension that is too
// big is listed), or nil when it can.
func (p *Pool) Fits(cpus MilliCPU, mem Bytes, gpus int) error {
	var field string
	var why []string
	add := func(f, s string) {
		if field == "" {
			field = f
		}
		why = append(why, s)
	}
	if cpus > p.Node.CPUs {
		add("cpus", fmt.Sprintf("%s (nodes have %s)", Plural(cpus, "cpu"), p.Node.CPUs))
	}
	if mem > p.Node.Memory {
		add("memory", fmt.Sprintf("%s of memory (nodes have %s)", mem, p.Node.Memory))
	}
	if gpus > p.Node.GPUs {
		add("gpus", fmt.Sprintf("%s (nodes have %d)", Plural(gpus, "gpu"), p.Node.GPUs))
	}
	if field == "" {
		return nil
	}
	return Invalid(field, "this job can never run in pool %s: it asks for %s; ask for less or submit to a bigger pool (`dspool pool list`)",
		p.Name, strings.Join(why, " and "))
}
