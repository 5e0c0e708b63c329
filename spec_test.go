package dspool_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func TestJobSpecNormalize(t *testing.T) {
	tests := []struct {
		name      string
		json      string
		wantField string // "" means valid
	}{
		{"minimal", `{"command":["true"]}`, ""},
		{"full", `{"pool":"gpu","name":"train","cpus":0.5,"memory":"4GiB","gpus":1,"time_limit":"2h","retries":2,"priority":5,"env":{"A":"b"},"workdir":"exp/1","command":["python","x.py"]}`, ""},
		{"no command", `{}`, "command"},
		{"empty command", `{"command":[""]}`, "command"},
		{"NUL in arg", `{"command":["a\u0000b"]}`, "command[0]"},
		{"negative cpus", `{"cpus":-1,"command":["true"]}`, "cpus"},
		{"huge cpus", `{"cpus":1e30,"command":["true"]}`, "cpus"},
		{"cpus as text", `{"cpus":"many","command":["true"]}`, "cpus"},
		{"negative memory", `{"memory":-5,"command":["true"]}`, "memory"},
		{"huge memory", `{"memory":"100000000TiB","command":["true"]}`, "memory"},
		{"negative gpus", `{"gpus":-1,"command":["true"]}`, "gpus"},
		{"overflowing gpus", `{"gpus":1e12,"command":["true"]}`, "gpus"},
		{"fractional gpus", `{"gpus":0.5,"command":["true"]}`, "gpus"},
		{"bad pool", `{"pool":"GPU!","command":["true"]}`, "pool"},
		{"bad time", `{"time_limit":"soon","command":["true"]}`, "time_limit"},
		{"negative retries", `{"retries":-1,"command":["true"]}`, "retries"},
		{"LD_PRELOAD", `{"env":{"LD_PRELOAD":"x.so"},"command":["true"]}`, "env.LD_PRELOAD"},
		{"BASH_ENV", `{"env":{"BASH_ENV":"x"},"command":["true"]}`, "env.BASH_ENV"},
		{"bad env name", `{"env":{"A=B":"x"},"command":["true"]}`, "env"},
		{"absolute workdir", `{"workdir":"/etc","command":["true"]}`, "workdir"},
		{"escaping workdir", `{"workdir":"a/../../b","command":["true"]}`, "workdir"},
		{"unknown field", `{"comand":["true"]}`, "comand"},
		{"not an object", `[1,2]`, ""},
		{"control char in name", `{"name":"a\u001b[31m","command":["true"]}`, "name"},
		{"invalid utf8 escaped", `{"name":"\udc00","command":["true"]}`, ""},
		{"bidi override in name", `{"name":"gnp.\u202eexe","command":["true"]}`, "name"},
		{"bidi isolate in name", `{"name":"a\u2066b","command":["true"]}`, "name"},
		{"zero-width space in name", `{"name":"ad\u200bmin","command":["true"]}`, "name"},
		{"line separator in name", `{"name":"a\u2028b","command":["true"]}`, "name"},
		{"bidi override in workdir", `{"workdir":"a\u202eb","command":["true"]}`, "workdir"},
		{"bidi override in an argument", `{"command":["echo","\u202eabc"]}`, ""},
		{"non-Latin name", `{"name":"训练-模型 ø","command":["true"]}`, ""},
		{"image by name", `{"image":"localhost/torch:2.3","command":["true"]}`, ""},
		{"image by digest", `{"image":"docker.io/library/debian@sha256:0123abcd","command":["true"]}`, ""},
		{"image file in home", `{"image":"images/torch.tar.gz","command":["true"]}`, ""},
		{"image file on the share", `{"image":"/srv/dspool/data/torch.tar","command":["true"]}`, ""},
		{"image file leaving", `{"image":"../bob/torch.tar","command":["true"]}`, "image"},
		{"image name as a flag", `{"image":"--privileged","command":["true"]}`, "image"},
		{"image name with a space", `{"image":"torch 2","command":["true"]}`, "image"},
		{"image name with a newline", `{"image":"torch\nx.tar","command":["true"]}`, "image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s dspool.JobSpec
			err := dspool.DecodeJSON([]byte(tt.json), &s)
			if err == nil {
				err = s.Normalize()
			}
			if tt.name == "not an object" || tt.name == "invalid utf8 escaped" {
				if tt.name == "not an object" && err == nil {
					t.Fatal("got nil error for a non-object body")
				}
				return
			}
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			e, ok := err.(*dspool.Error)
			if !ok {
				t.Fatalf("got %v (%T), want *dspool.Error naming %s", err, err, tt.wantField)
			}
			if e.Code != dspool.EInvalid || e.Field != tt.wantField {
				t.Errorf("got code %s field %q (%s), want invalid field %q", e.Code, e.Field, e.Message, tt.wantField)
			}
		})
	}
}

func TestValidateText(t *testing.T) {
	tests := []struct {
		name string
		text string
		ok   bool
	}{
		{"plain", "train resnet", true},
		{"accents and other scripts", "entraîner модель 训练", true},
		{"emoji", "🚀 run", true},
		{"empty", "", true},
		{"right-to-left override", "abc\u202edcb", false},
		{"left-to-right embedding", "\u202aabc", false},
		{"first strong isolate", "\u2068abc\u2069", false},
		{"right-to-left mark", "abc\u200f", false},
		{"zero-width space", "a\u200bb", false},
		{"zero-width joiner", "a\u200db", false},
		{"byte order mark", "\ufeffabc", false},
		{"soft hyphen", "ab\u00adc", false},
		{"line separator", "a\u2028b", false},
		{"paragraph separator", "a\u2029b", false},
		{"escape", "a\x1b[2Jb", false},
		{"newline", "a\nb", false},
		{"C1 control", "a\u009bb", false},
		{"NUL", "a\x00b", false},
		{"invalid UTF-8", "a\xffb", false},
		{"too long", strings.Repeat("a", 41), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dspool.ValidateText("name", tt.text, 40)
			if tt.ok {
				if err != nil {
					t.Fatalf("got %v, want %q accepted", err, tt.text)
				}
				return
			}
			var e *dspool.Error
			if !errors.As(err, &e) || e.Code != dspool.EInvalid || e.Field != "name" {
				t.Fatalf("got %v, want an invalid-input error naming name", err)
			}
		})
	}
}

func TestJobSpecDefaults(t *testing.T) {
	s := dspool.JobSpec{Command: []string{"/usr/bin/python3", "x.py"}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s.Pool != "default" || s.Name != "python3" || s.CPUs != 1000 || s.Memory != dspool.DefaultJobMemory {
		t.Errorf("got pool %q name %q cpus %v memory %v, want default python3 1 512MiB", s.Pool, s.Name, s.CPUs, s.Memory)
	}
}

func TestParseBytesAndCPU(t *testing.T) {
	for in, want := range map[string]dspool.Bytes{"512MiB": 512 << 20, "4GiB": 4 << 30, "1G": 1e9, "1.5GiB": 3 << 29, "100": 100, "2 gib": 2 << 30} {
		if got, err := dspool.ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1", "1XB", "1e9999"} {
		if _, err := dspool.ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded, want an error", bad)
		}
	}
	for in, want := range map[string]dspool.MilliCPU{"1": 1000, "0.5": 500, "16": 16000, "0.001": 1} {
		if got, err := dspool.ParseCPU(in); err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "NaN", "Inf", "1e300"} {
		if _, err := dspool.ParseCPU(bad); err == nil {
			t.Errorf("ParseCPU(%q) succeeded, want an error", bad)
		}
	}
}

func TestPoolNormalize(t *testing.T) {
	ok := func() dspool.Pool {
		return dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 8000, Memory: 1 << 30, GPUs: 1}, Count: 2}
	}
	tests := []struct {
		name      string
		mutate    func(*dspool.Pool)
		wantField string
	}{
		{"valid", func(*dspool.Pool) {}, ""},
		{"bad name", func(p *dspool.Pool) { p.Name = "Bad Name" }, "pools[0].name"},
		{"bad provider name", func(p *dspool.Pool) { p.Provider = dspool.Provider("Not A Name") }, "pools[0].provider"},
		{"settings without a name", func(p *dspool.Pool) {
			p.Provider = dspool.ProviderSpec{Settings: map[string]json.RawMessage{"partition": []byte(`"debug"`)}}
		}, "pools[0].provider.name"},
		{"zero cpus", func(p *dspool.Pool) { p.Node.CPUs = 0 }, "pools[0].node.cpus"},
		{"zero memory", func(p *dspool.Pool) { p.Node.Memory = 0 }, "pools[0].node.memory"},
		{"negative gpus", func(p *dspool.Pool) { p.Node.GPUs = -1 }, "pools[0].node.gpus"},
		{"negative count", func(p *dspool.Pool) { p.Count = -1 }, "pools[0].count"},
		{"bad work", func(p *dspool.Pool) { p.Work = []dspool.Work{"gaming"} }, "pools[0].work[0]"},
		{"NUL in setup", func(p *dspool.Pool) { p.Setup = "echo \x00" }, "pools[0].setup"},
		{"huge setup", func(p *dspool.Pool) { p.Setup = strings.Repeat("x", dspool.MaxSetupBytes+1) }, "pools[0].setup"},
		{"an image", func(p *dspool.Pool) { p.Image, p.ImageNetwork = "localhost/mini:1", "none" }, ""},
		{"bad image", func(p *dspool.Pool) { p.Image = "-v /:/host" }, "pools[0].image"},
		{"bad image network", func(p *dspool.Pool) { p.ImageNetwork = "bridge" }, "pools[0].image_network"},
		{"names hidden in the queue", func(p *dspool.Pool) { p.QueueNames = dspool.QueueNamesHidden }, ""},
		{"bad queue names", func(p *dspool.Pool) { p.QueueNames = "secret" }, "pools[0].queue_names"},
		{"a preemption grace under a second", func(p *dspool.Pool) { p.Preemption = &dspool.Preemption{Grace: dspool.Duration(time.Millisecond)} }, "pools[0].preemption.grace"},
		{"a preemption grace over an hour", func(p *dspool.Pool) { p.Preemption = &dspool.Preemption{Grace: dspool.Duration(2 * time.Hour)} }, "pools[0].preemption.grace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			tt.mutate(&p)
			err := p.Normalize("pools[0].")
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if p.Provider.Name != "local" || len(p.Work) != 2 {
					t.Errorf("defaults: got provider %q work %v", p.Provider, p.Work)
				}
				return
			}
			e, ok := err.(*dspool.Error)
			if !ok || e.Field != tt.wantField {
				t.Errorf("got %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
}

func FuzzJobSpec(f *testing.F) {
	for _, s := range []string{`{"command":["true"]}`, `{"cpus":0.5,"memory":"4GiB","env":{"A":"b"},"command":["a"]}`, `{"time_limit":"2h","command":["x"]}`, `[]`, `{"command":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s dspool.JobSpec
		if err := dspool.DecodeJSON(data, &s); err != nil {
			if dspool.ErrorCode(err) != dspool.EInvalid {
				t.Fatalf("decode error %v has code %s, want invalid", err, dspool.ErrorCode(err))
			}
			return
		}
		if err := s.Normalize(); err != nil {
			if e, ok := err.(*dspool.Error); !ok || e.Code != dspool.EInvalid || e.Field == "" {
				t.Fatalf("normalize error %v does not name a field", err)
			}
			return
		}
		// A valid spec holds the invariants the rest of dspool relies on.
		if s.CPUs <= 0 || s.Memory <= 0 || s.GPUs < 0 || len(s.Command) == 0 || s.Pool == "" {
			t.Fatalf("valid spec breaks invariants: %+v", s)
		}
		if strings.Contains(s.Workdir, "..") && strings.Contains("/"+s.Workdir+"/", "/../") {
			t.Fatalf("valid spec escapes its home: %q", s.Workdir)
		}
	})
}

func TestShareFull(t *testing.T) {
	const gib = dspool.Bytes(1 << 30)
	tests := []struct {
		name string
		u    dspool.Usage
		want string // in the reason; "" for room
	}{
		{"unknown", dspool.Usage{}, ""},
		{"room", dspool.Usage{ShareSize: 100 * gib, ShareFree: 50 * gib, ShareFiles: 1e6, ShareFilesFree: 5e5}, ""},
		{"large, under 100 MiB free", dspool.Usage{ShareSize: 100 * gib, ShareFree: 50 << 20}, "the share is full"},
		{"small, 2% free", dspool.Usage{ShareSize: 200 << 20, ShareFree: 4 << 20}, ""},
		{"small, under 1% free", dspool.Usage{ShareSize: 200 << 20, ShareFree: 1 << 20}, "the share is full"},
		{"no inodes left", dspool.Usage{ShareSize: 100 * gib, ShareFree: 50 * gib, ShareFiles: 1e6, ShareFilesFree: 10}, "out of inodes"},
		{"inodes unknown", dspool.Usage{ShareSize: 100 * gib, ShareFree: 50 * gib, ShareFiles: 0, ShareFilesFree: 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.u.ShareFull()
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNameBounds checks the bounds of length that the code keeps beside
// the patterns of names.
func TestNameBounds(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"pool name of 63", dspool.ValidateName("pool", "p"+strings.Repeat("a", 62)), true},
		{"pool name of 64", dspool.ValidateName("pool", "p"+strings.Repeat("a", 63)), false},
		{"pool name starting with a digit", dspool.ValidateName("pool", "1pool"), false},
		{"empty pool name", dspool.ValidateName("pool", ""), false},
		{"secret name of 64", dspool.ValidateSecretName("secret", "S"+strings.Repeat("_", 63)), true},
		{"secret name of 65", dspool.ValidateSecretName("secret", "S"+strings.Repeat("_", 64)), false},
		{"secret name with a dot", dspool.ValidateSecretName("secret", "a.b"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err == nil; got != tt.want {
				t.Errorf("got accepted %v (%v), want %v", got, tt.err, tt.want)
			}
		})
	}
}
