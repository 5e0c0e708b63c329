package dspool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MilliCPU is an amount of CPU in thousandths of a core. It reads and writes
// as a decimal number of cores ("1.5") in JSON, YAML and flags.
type MilliCPU int64

// ParseCPU parses a decimal number of cores with at most three decimals.
func ParseCPU(s string) (MilliCPU, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty cpu amount")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a number of cpus (examples: 1, 0.5, 16)", s)
	}
	if f < 0 {
		return 0, fmt.Errorf("%q: cpus cannot be negative", s)
	}
	if f > MaxCPUs {
		return 0, fmt.Errorf("%q: more than %d cpus", s, MaxCPUs)
	}
	return MilliCPU(math.Round(f * 1000)), nil
}

// MaxCPUs bounds every cpu amount so arithmetic can never overflow.
const MaxCPUs = 1 << 20

func (c MilliCPU) String() string {
	return strconv.FormatFloat(float64(c)/1000, 'f', -1, 64)
}

func (c MilliCPU) MarshalJSON() ([]byte, error) { return []byte(c.String()), nil }

func (c *MilliCPU) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	v, err := ParseCPU(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Bytes is an amount of memory or storage. It writes as an integer in JSON and
// reads an integer or a size with a unit ("512MiB", "4G", "1.5GiB").
type Bytes int64

// MaxBytes bounds every size (1 EiB) so arithmetic can never overflow.
const MaxBytes = 1 << 60

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30,
	"ti": 1 << 40, "tib": 1 << 40,
}

// ParseBytes parses a size such as "4GiB", "512M" or "1073741824".
func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%q is not a size (examples: 512MiB, 4GiB, 1.5G)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (examples: 512MiB, 4GiB, 1.5G)", s)
	}
	v := f * mult
	if v > MaxBytes {
		return 0, fmt.Errorf("%q is larger than 1 EiB", s)
	}
	return Bytes(math.Round(v)), nil
}

func (b Bytes) String() string {
	const unit = 1024
	if b < unit {
		return strconv.FormatInt(int64(b), 10) + "B"
	}
	div, exp := int64(unit), 0
	for n := int64(b) / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	v := float64(b) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + string("KMGTP"[exp]) + "iB"
}

func (b *Bytes) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		v, err := ParseBytes(s)
		if err != nil {
			return err
		}
		*b = v
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("%s is not a size", data)
	}
	v, err := ParseBytes(n.String())
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("90s", "2h30m"). A number other than 0 is refused: it has no unit.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (examples: 90s, 30m, 2h)", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("%s is not a duration (examples: 90s, 30m, 2h)", b)
	}
	// A bare number is ambiguous (seconds? minutes?): only 0 needs no unit.
	if secs != 0 {
		return fmt.Errorf("%s has no unit: write e.g. %ss, %sm or %sh", b, b, b, b)
	}
	*d = 0
	return nil
}

// Plural says an amount of a countable unit: "1 gpu", "2 gpus", "0.5 cpus",
// "0 nodes". Amount is printed as fmt.Sprint prints it.
func Plural(amount any, unit string) string {
	s := fmt.Sprint(amount)
	if s == "1" {
		return s + " " + unit
	}
	return s + " " + unit + "s"
}
