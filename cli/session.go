package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/pkg/sftp"
	"github.com/spf13/cobra"
)

func (a *App) keyCmd() *cobra.Command {
	c := &cobra.Command{Use: "key", Short: "Manage the SSH keys you log in with",
		Long: `Manage the SSH public keys that log you in through the pool's SSH gateway
(ssh -p 2222 USER@HOST, or USER+POOL@HOST for a given interactive pool). A key
logs in exactly one user.`,
		Example: "  dspool key add ~/.ssh/id_ed25519.pub\n  dspool key list\n  dspool key remove $(ssh-keygen -lf ~/.ssh/id_ed25519.pub | cut -d' ' -f2)",
	}
	var user string
	add := &cobra.Command{
		Use: "add [--user USER] FILE", Short: "Register a public key (a .pub file; - reads stdin)",
		Args:    args(1, 1, "the public key file", "dspool key add ~/.ssh/id_ed25519.pub"),
		Example: "  dspool key add ~/.ssh/id_ed25519.pub\n  dspool key add --user alice alice.pub\n  ssh-add -L | head -1 | dspool key add -",
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			var err error
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(a.Stdin, 64<<10))
			} else {
				b, err = readLimited(args[0], 64<<10)
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("%w: make a key pair first with `ssh-keygen -t ed25519`, then add its .pub file", err)
				}
			}
			if err != nil {
				return err
			}
			if strings.Contains(string(b), "PRIVATE KEY") {
				return dspool.Invalid("FILE", "%s is a private key: give the public key (the .pub file next to it)", args[0])
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			k, err := cl.AddKey(cmd.Context(), user, string(b))
			if err != nil {
				return err
			}
			return a.printKeysAs(k, []*dspool.SSHKey{k})
		},
	}
	add.Flags().StringVar(&user, "user", "", "the user the key logs in (default: you; others: admin)")
	var all bool
	list := &cobra.Command{
		Use: "list", Short: "List SSH keys", Args: cobra.NoArgs,
		Example: "  dspool key list\n  dspool key list --user alice\n  dspool key list --all -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			keys, err := cl.Keys(cmd.Context(), user, all)
			if err != nil {
				return err
			}
			return a.printKeysAs(keys, keys)
		},
	}
	list.Flags().StringVar(&user, "user", "", "whose keys (default: yours; others: admin)")
	list.Flags().BoolVar(&all, "all", false, "every user's keys (admin)")
	remove := &cobra.Command{
		Use: "remove ID|FINGERPRINT", Short: "Remove an SSH key", Args: args(1, 1, "the key's id or fingerprint", "dspool key remove SHA256:abc..."),
		Long:    "Remove an SSH key (yours; any, admin). The SSH connections it opened end at once, with a message that says so.",
		Example: "  dspool key remove 3\n  dspool key remove $(ssh-keygen -lf alice.pub | cut -d' ' -f2)",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			k, err := cl.RemoveKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printKeysAs(k, []*dspool.SSHKey{k})
		},
	}
	c.AddCommand(add, list, remove)
	return c
}

func (a *App) printKeysAs(v any, keys []*dspool.SSHKey) error {
	return a.print(v, []string{"ID", "USER", "TYPE", "FINGERPRINT", "COMMENT", "ADDED", "LAST USED"}, func(add func(...any)) {
		for _, k := range keys {
			used := "-"
			if k.LastUsed != nil {
				used = age(*k.LastUsed) + " ago"
			}
			add(k.ID, k.User, k.Type, k.Fingerprint, dash(k.Comment), k.CreatedAt.Local().Format("2006-01-02 15:04"), used)
		}
	})
}

func (a *App) sessionCmd() *cobra.Command {
	c := &cobra.Command{Use: "session", Short: "List and end interactive sessions",
		Long: `An interactive session is your presence on one node of an interactive pool:
every SSH connection you make to the pool lands on that node and shares its
reservation (the pool's sessions.cpus and sessions.memory) until the last one
closes.`,
		Example: "  dspool session list\n  dspool session kill s-0123456789abcdef",
	}
	var q api.SessionQuery
	list := &cobra.Command{
		Use: "list", Short: "List sessions, newest first (yours; --all: everyone's, admin)", Args: cobra.NoArgs,
		Example: "  dspool session list\n  dspool session list --all --ended -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			l, err := cl.SessionPage(cmd.Context(), q)
			if err != nil {
				return withFlags(err, map[string]string{"limit": "--limit", "before": "--before"})
			}
			if err := a.printSessionsAs(l.Sessions, l.Sessions); err != nil {
				return err
			}
			a.more(cmd, args, "sessions", l.Next)
			return nil
		},
	}
	list.Flags().BoolVar(&q.AllUsers, "all", false, "every user's sessions (admin)")
	list.Flags().BoolVar(&q.Ended, "ended", false, "include ended sessions")
	pageFlags(list, &q.Limit, 100, &q.Before, "sessions")
	show := &cobra.Command{
		Use: "show ID", Short: "Show a session", Args: args(1, 1, "a session id", "dspool session show s-0123456789abcdef"),
		Example: "  dspool session show s-0123456789abcdef -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			s, err := cl.Session(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printSessionsAs(s, []*dspool.Session{s})
		},
	}
	kill := &cobra.Command{
		Use: "kill ID", Short: "End a session: close its connections and kill its processes",
		Args: args(1, 1, "a session id", "dspool session kill s-0123456789abcdef"), Example: "  dspool session kill s-0123456789abcdef",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			s, err := cl.KillSession(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printSessionsAs(s, []*dspool.Session{s})
		},
	}
	c.AddCommand(list, show, kill)
	return c
}

func (a *App) printSessionsAs(v any, ss []*dspool.Session) error {
	return a.print(v, []string{"ID", "USER", "KIND", "POOL", "SIZE", "NODE", "STATE", "CONNS", "CPUS", "MEMORY", "GPUS", "IN", "OUT", "STARTED", "LAST ACTIVE", "ENDED"}, func(add func(...any)) {
		for _, s := range ss {
			node := s.NodeName
			if node == "" {
				node = s.Node
			}
			end := "-"
			if s.EndedAt != nil {
				end = age(*s.EndedAt) + " ago: " + s.EndReason
			}
			gpus := "-"
			if len(s.GPUIndices) > 0 {
				gpus = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(s.GPUIndices)), ","), "[]")
			}
			add(s.ID, s.User, s.Kind, s.Pool, dash(s.Size), node, s.State, s.Connections, s.CPUs, s.Memory, gpus, dspool.Bytes(s.BytesIn), dspool.Bytes(s.BytesOut),
				age(s.StartedAt)+" ago", age(s.LastActivity)+" ago", end)
		}
	})
}

// sftpServerCmd is the sftp subsystem of SSH sessions: agents run it as the
// session's user, speaking SFTP on stdin and stdout.
func (a *App) sftpServerCmd() *cobra.Command {
	return &cobra.Command{
		Use: "sftp-server", Short: "Serve SFTP on stdin/stdout (run by agents for SSH sessions)", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, _ := os.UserHomeDir()
			if h := os.Getenv("HOME"); h != "" {
				home = h
			}
			s, err := sftp.NewServer(struct {
				io.Reader
				io.WriteCloser
			}{os.Stdin, os.Stdout}, sftp.WithServerWorkingDirectory(home))
			if err != nil {
				return fmt.Errorf("sftp: %w", err)
			}
			if err := s.Serve(); err != nil && err != io.EOF {
				return fmt.Errorf("sftp: %w", err)
			}
			return nil
		},
	}
}
