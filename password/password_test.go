package password

import (
	"errors"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if err := Verify(h, "correct horse battery"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := Verify(h, "correct horse batterx"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	h2, _ := Hash("correct horse battery")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAA", h[:len(h)-10] + "!!"} {
		if err := Verify(bad, "correct horse battery"); err == nil {
			t.Errorf("Verify(%q) matched", bad)
		}
	}
	if err := VerifyMissing("x"); !errors.Is(err, ErrMismatch) {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	for _, pw := range []string{"short", "        ", strings.Repeat("a", MaxLen+1), "abc\x00defgh", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"} {
		var e *dspool.Error
		if err := Check(pw); !errors.As(err, &e) || e.Field != "password" {
			t.Errorf("Check(%q) = %v, want an error naming password", pw, err)
		}
	}
	if err := Check("eight ch"); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	h, _ := Hash("fuzzing passwords")
	f.Add(h)
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Fuzz(func(t *testing.T, hash string) {
		x, err := parse(hash)
		if err != nil {
			return
		}
		if x.memory > 256<<10 || x.passes > 10 || x.lanes > 16 || len(x.key) < 16 {
			t.Fatalf("parse(%q) accepted %+v", hash, x)
		}
	})
}
