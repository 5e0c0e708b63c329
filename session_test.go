package dspool

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseLogin(t *testing.T) {
	good := map[string]Login{
		"ada":                        {User: "ada"},
		"ada+gpu":                    {User: "ada", Pool: "gpu"},
		"a-1+pool-2":                 {User: "a-1", Pool: "pool-2"},
		"ada+gpu+large":              {User: "ada", Pool: "gpu", Size: "large"},
		"ada+gpu+8cpu-64gib-1gpu-4h": {User: "ada", Pool: "gpu", Size: "8cpu-64gib-1gpu-4h"},
	}
	for in, want := range good {
		got, err := ParseLogin(in)
		if err != nil || got != want {
			t.Errorf("ParseLogin(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("Login%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"", "+gpu", "ada+", "ada+gpu+", "ada+gpu+X", "ada+gpu+8cpu+x", "ada+gpu+-1", "ada+gpu+8cpu-8cpu", "ada++large", "Ada", "root\x00", "ada gpu", "../ada", "ada@host",
		"ada+GPU", "-ada", strings.Repeat("a", 200), "ada\n", "ädå"} {
		_, err := ParseLogin(in)
		var e *Error
		if !errors.As(err, &e) || e.Field != "login" {
			t.Errorf("ParseLogin(%q) = %v, want an invalid error naming login", in, err)
		}
	}
}

func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{"ada", "ada+gpu", "", "+", "a+b+c", "\xff", "root"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLogin(s)
		if err != nil {
			return
		}
		// What is accepted is a plain name (or two) and prints back as given.
		if l.String() != s || !ValidName(l.User) || l.Pool != "" && !ValidName(l.Pool) || l.Size != "" && ValidateSizeName("size", l.Size) != nil || !utf8.ValidString(s) {
			t.Fatalf("ParseLogin(%q) accepted %+v", s, l)
		}
		if strings.ContainsAny(l.User+l.Pool+l.Size, "/.\x00 @+:") {
			t.Fatalf("ParseLogin(%q) let a separator through: %+v", s, l)
		}
	})
}
