package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// Public keys made with ssh-keygen for these tests (their private halves
// were thrown away).
const (
	testEd25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILNxwjXkdHNlZvpJLaKpxlS8EJ1+QcKtHE6Kxu7/Qvth ada@laptop"
	testRSA1024 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDVhWh/maDi4PhAnsssRtODPdlgC+mey3OBzCJSTLF7K3AMyTvwx7kJeCtV8FMSWLBZwXIkbf1U7MO1wfkf8IRpvRsi8JoloWIXiA5oyjO5iKoKzvZay69m0F7GrPL/A4iGPUq4+Hmetgh4gc21Jv9iHfX8YEApKBx3P/pMbQv5vQ== root@vm"
	testECDSA   = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFxP/W2qZZQ5DntcZA+rR3aEoTAF7I9q1t49M6Z49F4TvCFHH6kwvzqaws/ZkCgd/EuD1NFuvEg8/N9CGYqUDx8= root@vm"
)

func TestParseKey(t *testing.T) {
	k, err := ParseKey("  " + testEd25519 + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if k.Type != "ssh-ed25519" || k.Comment != "ada@laptop" || !strings.HasPrefix(k.Fingerprint, "SHA256:") || strings.Contains(k.Key, "ada@laptop") {
		t.Fatalf("parsed %+v", k)
	}
	if k, err := ParseKey(testECDSA); err != nil || k.Type != "ecdsa-sha2-nistp256" {
		t.Fatalf("ecdsa: %+v, %v", k, err)
	}
	bad := map[string]string{
		"": "empty",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nabc": "private key",
		testRSA1024:                         "under 2048 bits",
		`command="rm -rf /" ` + testEd25519: "options",
		testEd25519 + "\n" + testECDSA:      "more than one key",
		"ssh-ed25519 AAAA":                  "not a public key",
		"ssh-dss AAAAB3NzaC1kc3MAAACBAP":    "not a public key",
		strings.Repeat("a", MaxKeyLine+1):   "bytes",
	}
	for in, want := range bad {
		_, err := ParseKey(in)
		var e *dspool.Error
		if !errors.As(err, &e) || e.Field != "key" || !strings.Contains(e.Message, want) {
			t.Errorf("ParseKey(%.40q) = %v; want an error naming key, saying %q", in, err, want)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{testEd25519, testRSA1024, testECDSA, "ssh-ed25519 AAAA x", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			var e *dspool.Error
			if !errors.As(err, &e) || e.Field != "key" {
				t.Fatalf("ParseKey(%q): %v is not an error naming key", s, err)
			}
			return
		}
		// What is stored parses again to the same key.
		k2, err := ParseKey(k.Key + " " + k.Comment)
		if err != nil || k2.Fingerprint != k.Fingerprint || strings.ContainsAny(k.Comment, "\n\r\x00") {
			t.Fatalf("ParseKey(%q) = %+v; stored form gives %+v, %v", s, k, k2, err)
		}
	})
}
