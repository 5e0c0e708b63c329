package dspool_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dspool/dspool"
)

// hidesText finds a character that changes how the text around it is shown
// or reads: a control, format, line or paragraph separator character.
func hidesText(s string) (rune, bool) {
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			return r, false
		}
	}
	return 0, true
}

// FuzzInputParsers feeds one untrusted string to every small parser of what
// users type or send (scopes, spans, emails, secret references and names,
// usage groupings, retention ages, priority ranges, shown text): none may panic, every refusal is an invalid-input error
// that names the field, and what one accepts is well formed.
func FuzzInputParsers(f *testing.F) {
	for _, s := range []string{"", "read,jobs", "admin", "7d", "30m", "2026-11-26T10:00:00Z", "a@b.c", "Ada@Example.ORG",
		"vision/tmp", "tmp", "../x", "a/b/c", "user", "pool", "1w", "-5m", "\x00", "é@é.é", strings.Repeat("a", 300),
		"gnp.\u202eexe", "a\u2066b\u2069", "ad\u200bmin", "a\u2028b", "\ufeffa", "a\u202e@b.c", "never", "0", "90d", "1.5d", "59m", "36500d",
		"-100..100", "5", "10..-10", "8cpu-64gib-1gpu-4h", "1cpu-1cpu", "999999999gpu", "30min", "large", "-1000..1000", " -3 .. 7 ", "1001", "..", "1..2..3"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	named := func(t *testing.T, what string, err error) {
		var e *dspool.Error
		if !errors.As(err, &e) || e.Code != dspool.EInvalid || e.Field == "" || e.Message == "" {
			t.Fatalf("%s refused with %#v: want an invalid-input error naming its field", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if z, inline, err := dspool.ParseSessionSize(s); err != nil {
			named(t, "ParseSessionSize", err)
		} else if inline && (z.CPUs < 0 || z.Memory < 0 || z.GPUs < 0 || z.Time < 0) {
			t.Fatalf("ParseSessionSize(%q) = %+v: want no negative amount", s, z)
		} else if back, ok, err := dspool.ParseSessionSize(z.Key()); inline && z.Key() != "" && (!ok || err != nil || back.Key() != z.Key()) {
			t.Fatalf("ParseSessionSize(%q) = %+v, whose key %q reads back as %+v, %v, %v", s, z, z.Key(), back, ok, err)
		}
		if w := (dspool.GPUWant{Type: s}); w.Validate("", 1) != nil {
			named(t, "GPUWant.Validate", w.Validate("", 1))
		} else if _, ok := hidesText(s); !ok || len(s) > dspool.MaxGPUTypeLen {
			t.Fatalf("GPUWant.Validate took gpu_type %q", s)
		}
		if r, err := dspool.ParsePriorityRange("priority", s); err != nil {
			named(t, "ParsePriorityRange", err)
		} else if r.Min > r.Max || r.Min < -dspool.MaxPriority || r.Max > dspool.MaxPriority {
			t.Fatalf("ParsePriorityRange(%q) = %v: want -1000 <= min <= max <= 1000", s, r)
		} else if back, err := dspool.ParsePriorityRange("priority", r.String()); err != nil || back != r {
			t.Fatalf("ParsePriorityRange(%q) = %v, which reads back as %v, %v", s, r, back, err)
		}
		if scopes, err := dspool.ParseScopes("scope", s); err != nil {
			named(t, "ParseScopes", err)
		} else if err := dspool.CheckScopes("scope", scopes); err != nil {
			t.Fatalf("ParseScopes(%q) = %v, which CheckScopes refuses: %v", s, scopes, err)
		}
		if d, err := dspool.ParseSpan(s); err == nil && d < 0 {
			t.Fatalf("ParseSpan(%q) = %v: want no negative span", s, d)
		}
		if at, err := dspool.ParseSince("since", s, now); err != nil {
			named(t, "ParseSince", err)
		} else if at.After(now) {
			t.Fatalf("ParseSince(%q) = %v, after now", s, at)
		}
		if e, err := dspool.NormalizeEmail("email", s); err != nil {
			named(t, "NormalizeEmail", err)
		} else if e != "" && (!utf8.ValidString(e) || strings.ToLower(e) != e || dspool.EmailDomain(e) == "") {
			t.Fatalf("NormalizeEmail(%q) = %q: want lower case with a domain", s, e)
		}
		if team, name, err := dspool.ParseSecretRef("secret", s); err != nil {
			named(t, "ParseSecretRef", err)
		} else if dspool.ValidateSecretName("secret", name) != nil || team != "" && !dspool.ValidName(team) {
			t.Fatalf("ParseSecretRef(%q) = %q, %q: a part it accepted is not valid", s, team, name)
		}
		if err := dspool.ValidateSecretEnv("env", s); err != nil {
			named(t, "ValidateSecretEnv", err)
		}
		if _, err := dspool.ParseUsageBy("by", s); err != nil {
			named(t, "ParseUsageBy", err)
		}
		if a, err := dspool.ParseAge("retention", s); err != nil {
			named(t, "ParseAge", err)
		} else if !a.Keeps() && (a < dspool.MinAge) {
			t.Fatalf("ParseAge(%q) = %v: want never or at least %v", s, a, dspool.MinAge)
		} else if again, err := dspool.ParseAge("retention", a.String()); err != nil || again != a {
			t.Fatalf("ParseAge(%q) = %v, which reads back as %v, %v", s, a, again, err)
		}
		if err := dspool.ValidateText("name", s, dspool.MaxNameLen); err != nil {
			named(t, "ValidateText", err)
		} else if shown, ok := hidesText(s); !ok {
			t.Fatalf("ValidateText(%q) accepted %U, which changes how text is shown", s, shown)
		}
	})
}
