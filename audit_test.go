package dspool_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestAuditActionsListsEveryAction: an action declared anywhere in the
// package is one `dspool audit --action` accepts.
func TestAuditActionsListsEveryAction(t *testing.T) {
	decl := regexp.MustCompile(`(?m)^\s*Audit\w+\s*=\s*"([a-z_]+\.[a-z_]+)"`)
	files, _ := filepath.Glob("*.go")
	var declared []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			declared = append(declared, m[1])
		}
	}
	if len(declared) < 20 {
		t.Fatalf("found %d declared actions; the pattern no longer matches the declarations", len(declared))
	}
	for _, a := range declared {
		if !slices.Contains(dspool.AuditActions, a) {
			t.Errorf("action %s is declared but not in AuditActions", a)
		}
	}
	if len(declared) != len(dspool.AuditActions) {
		t.Errorf("got %d actions in AuditActions, want the %d declared", len(dspool.AuditActions), len(declared))
	}
}

func TestCheckAuditAction(t *testing.T) {
	for _, tt := range []struct {
		name, action string
		ok           bool
	}{
		{"an action", "login.ssh", true},
		{"a family", "login", true},
		{"the family of team actions", "team", true},
		{"unknown", "bogus", false},
		{"a part of a family", "log", false},
		{"an unknown action of a known family", "login.ftp", false},
	} {
		err := dspool.CheckAuditAction("--action", tt.action)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %q: got %v, want ok %v", tt.name, tt.action, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "give a family (audit, gateway, join_token, job, key, login,") {
			t.Errorf("%s: %v; want the families listed", tt.name, err)
		}
	}
}
