package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/spf13/cobra"
)

// Who may get in: API tokens, disabling users, and the audit log.

// defaultTokenExpiry is what `dspool token create` asks for unless told:
// a token that leaks from a laptop or a CI log should not work forever.
// Automation that needs one that lasts asks for it (--expires never).
const defaultTokenExpiry = "90d"

func (a *App) tokenCmd() *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Manage API tokens",
		Long: `Manage API tokens. A token acts as its user, but only within its scopes:

  read      read jobs, logs, pools, nodes, sessions, usage, events
  jobs      submit and cancel jobs
  sessions  start and stop Jupyter servers, kill sessions
  account   the account itself: keys, tokens, password, secrets, teams it maintains
  admin     the pool, for an admin (includes account)

A token has only the scopes its user can use, and lists those: a token of a
user who is not an admin, asked for with admin, has account. A token made
with a token never gets more scopes, or a later expiry, than the token that
made it. Revoking a token refuses it at once and stops the Jupyter server it
started.`,
		Example: "  dspool token create --name ci --scope read,jobs --expires 30d\n  dspool token list\n  dspool token revoke 4"}
	var user, name, scope, expires string
	create := &cobra.Command{
		Use: "create", Short: "Create an API token (for another user: admin)", Args: cobra.NoArgs,
		Long: `Create an API token and print it once; the server keeps only its hash. Use
it with --token or DSPOOL_TOKEN.

It has the scopes of --scope (default: all those of the token or login that
asks) that its user can use, and prints them: for a user who is not an
admin, admin is account. It expires after --expires (default ` + defaultTokenExpiry + `;
"never" for a token that does not expire, e.g. for a long-lived service).

Making a token needs a login, or a token with the account scope. A token
never makes one with more scopes, or a later expiry, than itself: from a
token that expires, --expires never and an --expires past it are refused,
and the default expiry is cut to its own (saying so).`,
		Example: "  dspool token create --name laptop\n  dspool token create --name ci --scope read,jobs --expires 30d\n  DSPOOL_TOKEN=$(dspool token create --user alice --expires never) dspool job list",
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.TokenCreate{User: user, Name: name}
			if scope != "" {
				s, err := dspool.ParseScopes("--scope", scope)
				if err != nil {
					return err
				}
				req.Scopes = s
			}
			if expires == "never" {
				req.Never = true
			} else {
				d, err := dspool.ParseSpan(expires)
				if err != nil {
					return dspool.Invalid("--expires", "%q is not a span of time: use e.g. 12h, 30d or never", expires)
				}
				if d <= 0 {
					return dspool.Invalid("--expires", "%q: give a positive span of time, e.g. 12h or 30d (or never)", expires)
				}
				at := time.Now().Add(d).UTC().Truncate(time.Second)
				req.ExpiresAt = &at
				// The default is cut to the asking token's expiry; a span
				// the user chose is refused instead.
				req.CapExpiry = !cmd.Flags().Changed("expires")
			}
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.CreateTokenWith(cmd.Context(), req)
			if err != nil {
				return withFlags(err, map[string]string{"expires_at": "--expires", "never": "--expires", "scopes": "--scope", "name": "--name", "user": "--user"})
			}
			if req.CapExpiry && t.ExpiresAt != nil && t.ExpiresAt.Before(*req.ExpiresAt) {
				fmt.Fprintf(a.Stderr, "note: the token expires on %s, when the token that made it expires, rather than in %s: a token cannot outlive the token that made it\n",
					whenOrNever(t.ExpiresAt), expires)
			}
			if len(req.Scopes) > 0 && !slices.Equal(dspool.EffectiveScopes(req.Scopes, true), t.Scopes) {
				fmt.Fprintf(a.Stderr, "note: the token has scopes %s, not %s: it has only what %s may do\n",
					strings.Join(t.Scopes, ","), strings.Join(req.Scopes, ","), t.User)
			}
			if ok, _ := a.json(); ok {
				return a.print(t, nil, nil)
			}
			fmt.Fprintln(a.Stdout, t.Secret)
			fmt.Fprintf(a.Stderr, "token %d (%s's): scopes %s, expires %s; it is shown only now\n",
				t.ID, t.User, strings.Join(t.Scopes, ","), whenOrNever(t.ExpiresAt))
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "the user the token acts as (default: you; others: admin)")
	create.Flags().StringVar(&name, "name", "", "a name to know it by in the token list")
	create.Flags().StringVar(&scope, "scope", "", "what it may do: some of read,jobs,sessions,account,admin, or all (default: all those of the token that asks)")
	create.Flags().StringVar(&expires, "expires", defaultTokenExpiry, "when it expires, from now (e.g. 12h, 30d), or never")

	var all bool
	list := &cobra.Command{
		Use: "list", Short: "List API tokens (yours; --all: everyone's, admin)", Args: cobra.NoArgs,
		Long:    "List API tokens: their id, name, scopes, when they were made, expire and were last used (to the minute), and whether they are revoked. Never their secrets.",
		Example: "  dspool token list\n  dspool token list --all -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ts, err := cl.Tokens(cmd.Context(), "", all)
			if err != nil {
				return err
			}
			return a.printTokensAs(ts, ts)
		},
	}
	list.Flags().BoolVar(&all, "all", false, "every user's tokens (admin)")

	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API token (yours; any, admin)", Args: args(1, 1, "a token id", "dspool token revoke 4"),
		Long:    "Revoke an API token: it is refused from now on, and the Jupyter server it started is stopped. Revoking a revoked token changes nothing.",
		Example: "  dspool token revoke 4",
		RunE: func(cmd *cobra.Command, argv []string) error {
			id, err := strconv.ParseInt(argv[0], 10, 64)
			if err != nil || id <= 0 {
				return dspool.Invalid("ID", "%q is not a token id: see `dspool token list`", argv[0])
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.RevokeToken(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.printTokensAs(t, []*dspool.Token{t})
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}

func whenOrNever(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func (a *App) printTokensAs(v any, ts []*dspool.Token) error {
	return a.print(v, []string{"ID", "USER", "NAME", "SCOPES", "CREATED", "EXPIRES", "LAST USED", "REVOKED"}, func(add func(...any)) {
		for _, t := range ts {
			used, revoked := "-", "-"
			if t.LastUsed != nil {
				used = age(*t.LastUsed) + " ago"
			}
			if t.RevokedAt != nil {
				revoked = t.RevokedAt.Local().Format("2006-01-02 15:04")
			}
			expires := whenOrNever(t.ExpiresAt)
			if t.ExpiresAt != nil && t.RevokedAt == nil && !t.ExpiresAt.After(time.Now()) {
				expires += " (expired)"
			}
			add(t.ID, t.User, dash(t.Name), strings.Join(t.Scopes, ","), t.CreatedAt.Local().Format("2006-01-02 15:04"), expires, used, revoked)
		}
	})
}

// userDisableCmd is `dspool user disable` (or, with disable false, enable).
func (a *App) userDisableCmd(disable bool) *cobra.Command {
	c := &cobra.Command{
		Use: "disable NAME", Short: "Disable a user (admin): end their sessions, refuse their credentials",
		Long: `Disable a user. At once their SSH sessions and Jupyter server end, with a
message that says so, and none of their credentials works: API tokens, web
logins (which end), SSH keys and password. Their jobs are left alone: cancel
them with dspool job cancel if they must stop. dspool user enable undoes it
(tokens and keys work again; they log in to the web page again).`,
		Args:    args(1, 1, "a user name", "dspool user disable ada"),
		Example: "  dspool user disable bob",
	}
	if !disable {
		c.Use, c.Short = "enable NAME", "Enable a disabled user (admin)"
		c.Long = "Enable a disabled user: their API tokens and SSH keys work again, and they can log in to the web page."
		c.Args, c.Example = args(1, 1, "a user name", "dspool user enable bob"), "  dspool user enable bob"
	}
	c.RunE = func(cmd *cobra.Command, argv []string) error {
		cl, err := a.client()
		if err != nil {
			return err
		}
		var u *dspool.User
		if disable {
			u, err = cl.DisableUser(cmd.Context(), argv[0])
		} else {
			u, err = cl.EnableUser(cmd.Context(), argv[0])
		}
		if err != nil {
			return err
		}
		if ok, _ := a.json(); ok {
			return a.print(u, nil, nil)
		}
		state := "enabled"
		if u.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(a.Stdout, "user %s is %s\n", u.Name, state)
		return nil
	}
	return c
}

func (a *App) auditCmd() *cobra.Command {
	var since, user, action string
	var limit int
	var before int64
	c := &cobra.Command{
		Use: "audit", Short: "Show the audit log (admin)", Args: cobra.NoArgs,
		Long: `Show the audit log, oldest first: logins over SSH and the web (and their
refusals, with why), tokens made and revoked, keys added and removed,
passwords set, users created, disabled and enabled, pools applied, join
tokens made, sessions ended by others, and secrets read and written. It is
append-only: nothing removes or changes an entry. Times are local.

--action takes an action (login.ssh) or a family (login); --user selects
what a user did, and what was done to them and to their tokens, keys and
sessions.`,
		Example: "  dspool audit\n  dspool audit --since 7d --user alice\n  dspool audit --action login --since 1h -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			q := api.AuditQuery{User: user, Action: action, Limit: limit, Before: before}
			if since != "" && since != "0" {
				d, err := dspool.ParseSpan(since)
				if err != nil || d == 0 {
					return dspool.Invalid("--since", "%q is not a span of time: use e.g. 30m, 24h or 7d (0 for everything)", since)
				}
				q.Since = d
			}
			if limit < 1 || limit > 10000 {
				return dspool.Invalid("--limit", "%d is out of range: give a number from 1 to 10000", limit)
			}
			if action != "" {
				if err := dspool.CheckAuditAction("--action", action); err != nil {
					return err
				}
			}
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			l, err := cl.AuditPage(cmd.Context(), q)
			if err != nil {
				return withFlags(err, map[string]string{"user": "--user", "action": "--action", "since": "--since", "limit": "--limit", "before": "--before"})
			}
			defer a.more(cmd, args, "entries", l.Next)
			es := l.Entries
			if es == nil {
				es = []*dspool.AuditEntry{}
			}
			if ok, _ := a.json(); !ok && len(es) == 0 {
				note := sinceNote(since)
				if since == "0" {
					note = ""
				}
				fmt.Fprintf(a.Stderr, "(no audit entries%s)\n", note)
				return nil
			}
			return a.print(es, []string{"TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REMOTE", "DETAIL"}, func(add func(...any)) {
				for _, e := range es {
					add(e.At.Local().Format("Jan 02 15:04:05"), e.Actor, e.Action, dash(e.Target), e.Outcome, dash(e.Remote),
						dash(strings.ReplaceAll(e.Detail, "\n", " ")))
				}
			})
		},
	}
	c.Flags().StringVar(&since, "since", "24h", "only entries of the last span, e.g. 1h, 24h, 7d (0: every entry)")
	c.Flags().StringVar(&user, "user", "", "only what this user did, or what was done to them")
	c.Flags().StringVar(&action, "action", "", "only this action (login.ssh) or family (login)")
	pageFlags(c, &limit, 1000, &before, "entries")
	return c
}
