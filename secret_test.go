package dspool_test

import (
	"testing"

	"github.com/dspool/dspool"
)

func TestJobSpecSecrets(t *testing.T) {
	tests := []struct {
		name      string
		json      string
		wantField string // "" means valid
		wantEnv   string // the first use's variable, when valid
	}{
		{"default variable", `{"command":["true"],"secrets":[{"secret":"hf-token"}]}`, "", "HF_TOKEN"},
		{"given variable", `{"command":["true"],"secrets":[{"secret":"hf-token","env":"HF_HOME_TOKEN"}]}`, "", "HF_HOME_TOKEN"},
		{"a team's", `{"command":["true"],"secrets":[{"secret":"ml/wandb"}]}`, "", "WANDB"},
		{"a file", `{"command":["true"],"secrets":[{"secret":"gcp-key","file":true}]}`, "", ""},
		{"same secret as both", `{"command":["true"],"secrets":[{"secret":"k"},{"secret":"k","file":true}]}`, "", "K"},
		{"bad name", `{"command":["true"],"secrets":[{"secret":"../etc/passwd"}]}`, "secrets[0].secret", ""},
		{"dot in name", `{"command":["true"],"secrets":[{"secret":"a.b","file":true}]}`, "secrets[0].secret", ""},
		{"bad team", `{"command":["true"],"secrets":[{"secret":"ML!/x"}]}`, "secrets[0].secret", ""},
		{"empty", `{"command":["true"],"secrets":[{"secret":""}]}`, "secrets[0].secret", ""},
		{"LD_PRELOAD", `{"command":["true"],"secrets":[{"secret":"x","env":"LD_PRELOAD"}]}`, "secrets[0].env", ""},
		{"PATH", `{"command":["true"],"secrets":[{"secret":"x","env":"PATH"}]}`, "secrets[0].env", ""},
		{"HOME", `{"command":["true"],"secrets":[{"secret":"x","env":"HOME"}]}`, "secrets[0].env", ""},
		{"DSPOOL_", `{"command":["true"],"secrets":[{"secret":"x","env":"DSPOOL_SECRETS_DIR"}]}`, "secrets[0].env", ""},
		{"a default that is reserved", `{"command":["true"],"secrets":[{"secret":"path"}]}`, "secrets[0].env", ""},
		{"bad variable", `{"command":["true"],"secrets":[{"secret":"x","env":"1X"}]}`, "secrets[0].env", ""},
		{"two in one variable", `{"command":["true"],"secrets":[{"secret":"a","env":"X"},{"secret":"b","env":"X"}]}`, "secrets[1].env", ""},
		{"also in --env", `{"command":["true"],"env":{"X":"1"},"secrets":[{"secret":"a","env":"X"}]}`, "secrets[0].env", ""},
		{"two files of one name", `{"command":["true"],"secrets":[{"secret":"k","file":true},{"secret":"ml/k","file":true}]}`, "secrets[1].secret", ""},
		{"file and variable at once", `{"command":["true"],"secrets":[{"secret":"k","env":"K","file":true}]}`, "secrets[0]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s dspool.JobSpec
			err := dspool.DecodeJSON([]byte(tt.json), &s)
			if err == nil {
				err = s.Normalize()
			}
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if got := s.Secrets[0].Env; got != tt.wantEnv {
					t.Errorf("variable %q, want %q", got, tt.wantEnv)
				}
				return
			}
			e, ok := err.(*dspool.Error)
			if !ok || e.Code != dspool.EInvalid || e.Field != tt.wantField {
				t.Fatalf("got %#v, want invalid %s", err, tt.wantField)
			}
		})
	}
}

func TestTooManySecrets(t *testing.T) {
	s := dspool.JobSpec{Command: []string{"true"}}
	for range dspool.MaxJobSecrets + 1 {
		s.Secrets = append(s.Secrets, dspool.SecretUse{Secret: "x", File: true})
	}
	if err := s.Normalize(); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Fatalf("got %v, want invalid", err)
	}
}
