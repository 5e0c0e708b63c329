package dspool

import (
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool/internal/lazyregexp"
)

// Secret is what is known of a secret besides its value, which never leaves
// the control plane but towards the agent that runs the work asking for it.
// It belongs to a user, or to a team whose members may all use it: exactly
// one of User and Team is set.
type Secret struct {
	Name string `json:"name"`
	User string `json:"user,omitempty"`
	Team string `json:"team,omitempty"`
	// SessionEnv and SessionFile give the secret to the interactive
	// sessions (SSH logins, Jupyter servers) of its user, or of every
	// member of its team: in this environment variable, and/or as a file
	// in $DSPOOL_SECRETS_DIR.
	SessionEnv  string     `json:"session_env,omitempty"`
	SessionFile bool       `json:"session_file,omitempty"`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	LastReadAt  *time.Time `json:"last_read_at"`
}

// Ref is how work names the secret: NAME for a user's own, TEAM/NAME for a
// team's.
func (s *Secret) Ref() string {
	if s.Team != "" {
		return s.Team + "/" + s.Name
	}
	return s.Name
}

// SecretUse is one secret a job asks for, by reference (NAME, or TEAM/NAME
// for a secret of a team the user is in): its value goes into the
// environment variable Env, or into a file named after the secret in the
// attempt's private directory $DSPOOL_SECRETS_DIR when File is set. A job
// holds only these references, never values.
type SecretUse struct {
	Secret string `json:"secret"`
	Env    string `json:"env,omitempty"`
	File   bool   `json:"file,omitempty"`
}

// Bounds of secrets.
const (
	MaxSecretValue = 64 << 10
	MaxJobSecrets  = 64
)

// secretNameRE leaves the bound of length to ValidateSecretName, as nameRE
// does.
var secretNameRE = lazyregexp.New(`^[A-Za-z][A-Za-z0-9_-]*$`)

// ValidateSecretName returns an EInvalid error naming field unless s can
// name a secret: 1-64 letters, digits, '_' and '-', starting with a letter.
// It is also the name of the secret's file, so it never holds '/' or '.'.
func ValidateSecretName(field, s string) error {
	if len(s) > 64 || !secretNameRE.MatchString(s) {
		return Invalid(field, "%s is not a valid secret name: use 1-64 letters, digits, '_' and '-', starting with a letter", quote(s))
	}
	return nil
}

// ParseSecretRef splits a reference into the team ("" for the user's own
// secret) and the secret's name, checking both.
func ParseSecretRef(field, ref string) (team, name string, err error) {
	team, name, ok := strings.Cut(ref, "/")
	if !ok {
		team, name = "", ref
	} else if !ValidName(team) || strings.Contains(name, "/") {
		return "", "", Invalid(field, "%s is not a secret's name: give NAME for your own secret, or TEAM/NAME for a team's, each of letters, digits, '_' and '-' (`dspool secret list` shows them)", quote(ref))
	}
	if err := ValidateSecretName(field, name); err != nil {
		return "", "", err
	}
	return team, name, nil
}

// SecretEnvName is the environment variable a secret goes into when none is
// given: its name upper-cased, with '-' as '_'.
func SecretEnvName(name string) string {
	return strings.ReplaceAll(strings.ToUpper(name), "-", "_")
}

// ValidateSecretEnv returns an EInvalid error naming field unless k may
// hold a secret: a valid variable name that neither dspool nor the loader
// and shells own (PATH and SHELL included, unlike --env).
func ValidateSecretEnv(field, k string) error {
	if !envNameRE.MatchString(k) || len(k) > 256 {
		return Invalid(field, "%s is not a valid variable name: use letters, digits and '_', not starting with a digit", quote(k))
	}
	if reservedEnvName(k) || k == "PATH" || k == "SHELL" {
		return Invalid(field, "%s is set by dspool or changes how programs load, so a secret cannot go into it", k)
	}
	return nil
}

// normalizeSecrets fills each use's default variable and checks that no two
// uses land in the same variable or file, nor in a variable of env.
func normalizeSecrets(uses []SecretUse, env map[string]string) error {
	if len(uses) > MaxJobSecrets {
		return Invalid("secrets", "has %d secrets: at most %d", len(uses), MaxJobSecrets)
	}
	vars, files := map[string]int{}, map[string]int{}
	for i := range uses {
		u := &uses[i]
		field := fmt.Sprintf("secrets[%d]", i)
		_, name, err := ParseSecretRef(field+".secret", u.Secret)
		if err != nil {
			return err
		}
		if u.File {
			if u.Env != "" {
				return Invalid(field, "asks for both a file and the variable %s: give the secret twice, once for each", u.Env)
			}
			if j, ok := files[name]; ok {
				return Invalid(field+".secret", "%s and secrets[%d] would both be the file %s in $DSPOOL_SECRETS_DIR", quote(u.Secret), j, name)
			}
			files[name] = i
			continue
		}
		if u.Env == "" {
			u.Env = SecretEnvName(name)
		}
		if err := ValidateSecretEnv(field+".env", u.Env); err != nil {
			return err
		}
		if j, ok := vars[u.Env]; ok {
			return Invalid(field+".env", "%s already holds secrets[%d]: give each secret its own variable (--secret NAME=VAR)", u.Env, j)
		}
		if _, ok := env[u.Env]; ok {
			return Invalid(field+".env", "%s is also set with --env: a variable holds one or the other", u.Env)
		}
		vars[u.Env] = i
	}
	return nil
}
