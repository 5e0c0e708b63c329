package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/lazyregexp"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *App) secretCmd() *cobra.Command {
	c := &cobra.Command{Use: "secret", Short: "Keep secrets that jobs and sessions get, never shown again",
		Long: `Keep secrets (API keys, passwords, credentials) that your jobs and sessions
get at their start, as an environment variable or a file, without the value
ever being in a command line, a log, the share or the store in the clear. A
secret is yours, or a team's: every member of the team may use it.`,
		Example: `  dspool secret set hf-token < ~/.cache/huggingface/token
  dspool job submit --secret hf-token --secret-file gcp-key --workdir project -- python3 train.py
  dspool secret list`,
	}
	c.AddCommand(a.secretSetCmd(), a.secretListCmd(), a.secretDeleteCmd(), a.secretRotateCmd())
	return c
}

func (a *App) secretSetCmd() *cobra.Command {
	var req api.SecretSet
	var raw bool
	c := &cobra.Command{
		Use:   "set NAME|TEAM/NAME [--team TEAM] < FILE",
		Short: "Create or replace a secret, reading its value from standard input",
		Long: `Create a secret, or replace its value, reading the value from standard input:
never from the command line, where ps and shell history would show it. On a
terminal it asks for it without echo. One trailing newline is dropped unless
--raw is given. At most 64KiB.

--session-env VAR and --session-file also give the secret to your interactive
sessions (SSH logins, your Jupyter server) as the variable VAR and as the file
$DSPOOL_SECRETS_DIR/NAME; for a team's secret, to every member's. Setting a
secret again without them stops that.

A team's secret is named TEAM/NAME (or NAME with --team TEAM). Any member
creates one; only the member who set it, a maintainer of the team or an
admin replaces it.`,
		Example: `  dspool secret set db-password
  dspool secret set hf-token < ~/.cache/huggingface/token
  dspool secret set gcp-key --raw < key.json
  dspool secret set vision/wandb-key < key.txt
  dspool secret set openai-key --session-env OPENAI_API_KEY < key.txt`,
		Args: func(cmd *cobra.Command, got []string) error {
			if len(got) > 1 {
				return dspool.Invalid("VALUE", "give the value on standard input, never as an argument (ps and shell history would show it): dspool secret set %s < FILE", got[0])
			}
			return args(1, 1, "the secret's name", "dspool secret set db-password < password.txt")(cmd, got)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			team, name, err := secretArg(args[0], req.Team)
			if err != nil {
				return err
			}
			req.Team = team
			if req.SessionEnv != "" {
				if err := dspool.ValidateSecretEnv("--session-env", req.SessionEnv); err != nil {
					return err
				}
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			v, err := a.readSecret(args[0], raw)
			if err != nil {
				return err
			}
			req.Value = v
			defer clear(v)
			s, err := cl.SetSecret(cmd.Context(), name, req)
			if err != nil {
				return withFlags(err, map[string]string{"name": "NAME", "team": "--team", "session_env": "--session-env", "value": "VALUE"})
			}
			return a.printSecretsAs(s, []*dspool.Secret{s})
		},
	}
	f := c.Flags()
	f.StringVar(&req.Team, "team", "", "make it a secret of this team, for its members (you must be one); or name it TEAM/NAME")
	f.StringVar(&req.SessionEnv, "session-env", "", "also give it to your SSH sessions and Jupyter server as this variable")
	f.BoolVar(&req.SessionFile, "session-file", false, "also give it to your SSH sessions and Jupyter server as the file $DSPOOL_SECRETS_DIR/NAME")
	f.BoolVar(&raw, "raw", false, "keep the value exactly as read, trailing newline included")
	return c
}

// readSecret reads a secret's value: without echo on a terminal, else the
// whole of standard input.
func (a *App) readSecret(name string, raw bool) ([]byte, error) {
	var b []byte
	if f, ok := a.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(a.Stderr, "Value of secret %s (not shown): ", name)
		v, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.Stderr)
		if err != nil {
			return nil, err
		}
		b = v
	} else {
		if a.Stdin == nil {
			return nil, dspool.Invalid("VALUE", "give the value on standard input")
		}
		v, err := io.ReadAll(io.LimitReader(a.Stdin, dspool.MaxSecretValue+2))
		if err != nil {
			return nil, fmt.Errorf("read the value from standard input: %w", err)
		}
		b = v
	}
	if !raw {
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
	}
	if len(b) == 0 {
		return nil, dspool.Invalid("VALUE", "standard input is empty: give the value there, e.g. dspool secret set %s < FILE", name)
	}
	if len(b) > dspool.MaxSecretValue {
		return nil, dspool.Invalid("VALUE", "is over %s: keep large credentials on the share and a key to them here", dspool.Bytes(dspool.MaxSecretValue))
	}
	return b, nil
}

func (a *App) secretListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List your secrets and your teams' (names and dates, never values)", Args: cobra.NoArgs,
		Example: "  dspool secret list\n  dspool secret list -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			l, err := cl.Secrets(cmd.Context())
			if err != nil {
				return err
			}
			return a.printSecretsAs(l, l)
		},
	}
}

func (a *App) secretDeleteCmd() *cobra.Command {
	var team string
	c := &cobra.Command{
		Use: "delete NAME|TEAM/NAME", Short: "Delete a secret; work that asks for it afterwards cannot start",
		Long: `Delete one of your secrets (NAME), or a team's (TEAM/NAME, as dspool secret
list shows it). A team's secret is deleted by the member who set it, a
maintainer of the team or an admin. Work that asks for it afterwards fails
to start, naming it.`,
		Args:    args(1, 1, "the secret's name", "dspool secret delete db-password"),
		Example: "  dspool secret delete db-password\n  dspool secret delete vision/wandb-key",
		RunE: func(cmd *cobra.Command, args []string) error {
			team, name, err := secretArg(args[0], team)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteSecret(cmd.Context(), name, team); err != nil {
				return withFlags(err, map[string]string{"name": "NAME", "team": "--team"})
			}
			fmt.Fprintf(a.Stderr, "secret %s deleted\n", (&dspool.Secret{Name: name, Team: team}).Ref())
			return nil
		},
	}
	c.Flags().StringVar(&team, "team", "", "delete this team's secret NAME, as TEAM/NAME does")
	return c
}

// secretArg reads a secret named on the command line, NAME or TEAM/NAME,
// with the team of --team (""): it returns the team ("" for the user's own)
// and the name.
func secretArg(arg, flagTeam string) (team, name string, err error) {
	team, name, err = dspool.ParseSecretRef("NAME", arg)
	if err != nil {
		return "", "", err
	}
	switch {
	case team == "":
		team = flagTeam
	case flagTeam != "" && flagTeam != team:
		return "", "", dspool.Invalid("--team", "%s names team %s, and --team %s another: give one of them", arg, team, flagTeam)
	}
	return team, name, nil
}

func (a *App) secretRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use: "rotate-key", Short: "Re-encrypt every secret under a new key (admin)", Args: cobra.NoArgs,
		Long: `Make a new key-encryption key, re-encrypt every secret under it in one
transaction, and replace the key file (DATA/secrets.key) with it. The old key
opens nothing in the store afterwards. Back the new key file up apart from the
store. A key given in DSPOOL_SECRETS_KEY cannot be rotated this way.`,
		Example: "  dspool secret rotate-key",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			r, err := cl.RotateSecretsKey(cmd.Context())
			if err != nil {
				return err
			}
			if ok, _ := a.json(); ok {
				return a.print(r, nil, nil)
			}
			fmt.Fprintf(a.Stdout, "re-encrypted %d secrets under the new key %s\n", r.Secrets, r.KeyID)
			return nil
		},
	}
}

// printSecretsAs prints secrets as a table, or v as JSON.
func (a *App) printSecretsAs(v any, l []*dspool.Secret) error {
	return a.print(v, []string{"NAME", "OWNER", "SESSIONS", "CREATED", "UPDATED", "LAST READ"}, func(add func(...any)) {
		for _, s := range l {
			owner := s.User
			if s.Team != "" {
				owner = "team " + s.Team
			}
			sessions := "-"
			switch {
			case s.SessionEnv != "" && s.SessionFile:
				sessions = "$" + s.SessionEnv + ", file"
			case s.SessionEnv != "":
				sessions = "$" + s.SessionEnv
			case s.SessionFile:
				sessions = "file"
			}
			read := "never"
			if s.LastReadAt != nil {
				read = s.LastReadAt.Local().Format(time.DateTime)
			}
			add(s.Ref(), owner, sessions, s.CreatedAt.Local().Format(time.DateTime), s.UpdatedAt.Local().Format(time.DateTime), read)
		}
	})
}

// secretIndex finds "secrets[3]" and what follows it (".secret") in a
// field or message.
var secretIndex = lazyregexp.New(`secrets\[(\d+)\](\.[a-z]+)?`)

// secretFlags names, in an error about the job's secrets ("secrets[1].env"),
// the flag the user gave it with ("--secret-file gcp-key"): the spec lists
// those of --secret, then those of --secret-file.
func secretFlags(err error, env, files []string) error {
	var e *dspool.Error
	if !errors.As(err, &e) || !strings.HasPrefix(e.Field, "secrets") {
		return err
	}
	flag := func(s string) string {
		m := secretIndex.FindStringSubmatch(s)
		i, _ := strconv.Atoi(m[1])
		switch {
		case i < len(env):
			return "--secret " + env[i]
		case i-len(env) < len(files):
			return "--secret-file " + files[i-len(env)]
		}
		return s
	}
	named := *e
	if named.Field == "secrets" {
		named.Field = "--secret"
	} else {
		named.Field = secretIndex.ReplaceAllStringFunc(named.Field, flag)
	}
	named.Message = secretIndex.ReplaceAllStringFunc(named.Message, flag)
	return &named
}

// secretUses lists where a job's secrets go: "hf-token in $HF_TOKEN,
// ml/gcp-key as a file".
func secretUses(uses []dspool.SecretUse) string {
	parts := make([]string, len(uses))
	for i, u := range uses {
		if u.File {
			parts[i] = u.Secret + " as a file"
		} else {
			parts[i] = u.Secret + " in $" + u.Env
		}
	}
	return strings.Join(parts, ", ")
}
