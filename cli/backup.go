package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/atomicfile"
	"github.com/dspool/dspool/secrets"
	"github.com/dspool/dspool/store"
	"github.com/spf13/cobra"
)

// Backup and restore of the store (docs/decisions/0020): through the
// running control plane by default, or on a stopped one's data directory
// with --data.

func (a *App) backupCmd() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "backup FILE",
		Short: "Copy the store, consistently, while the control plane runs (admin)",
		Long: `Write a consistent copy of the store (users, tokens, pools, nodes, jobs,
sessions, secrets, the audit log) to FILE, mode 0600, while the control
plane runs and takes work: through the API, as an admin. The copy is
checked before it replaces FILE.

With --data DIR it copies the store of a control plane that is stopped
(one that runs holds DIR's lock, and this is refused: back up through it).

The store alone is not enough: back up, apart from it, DATA/secrets.key
(without it the secrets in the copy cannot be opened), the CA in DATA/tls
and the SSH host key DATA/ssh_host_ed25519_key (docs/guide.md).`,
		Example: "  dspool backup /backups/dspool-$(date +%F).db\n  dspool backup --data /var/lib/dspool /backups/dspool.db",
		Args:    args(1, 1, "the file to write", "dspool backup /backups/dspool.db"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			file := argv[0]
			out, err := atomicfile.New(file, 0o600)
			if err != nil {
				return fmt.Errorf("back up to %s: %w", file, err)
			}
			defer out.Abort()
			from := data
			if data != "" {
				err = backupData(cmd.Context(), data, out.Name())
			} else {
				cl, err := a.client()
				if err != nil {
					return err
				}
				from = cl.Server
				if _, err = cl.Backup(cmd.Context(), out); err != nil {
					return fmt.Errorf("back up to %s: %w", file, err)
				}
			}
			if err == nil {
				err = out.Sync()
			}
			if err != nil {
				return fmt.Errorf("back up to %s: %w", file, err)
			}
			info, err := store.CheckBackup(cmd.Context(), out.Name())
			if err != nil {
				return fmt.Errorf("back up to %s: the copy does not check, and %s is left as it was: %w", file, file, err)
			}
			if err := out.Commit(); err != nil {
				return fmt.Errorf("back up to %s: %w", file, err)
			}
			fmt.Fprintf(a.Stdout, "backed up the store of %s to %s: %s, %s\n", from, file, dspool.Bytes(info.Size), holds(info))
			fmt.Fprintf(a.Stderr, "note: back up DATA/secrets.key apart from it (without it the secrets in it cannot be opened), and DATA/tls and DATA/ssh_host_ed25519_key\n")
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "", "copy the store in this data directory, whose control plane is stopped, instead of asking the running one")
	return c
}

// backupData copies the store in the data directory dir to file, holding
// dir's lock meanwhile so that no control plane starts on it.
func backupData(ctx context.Context, dir, file string) error {
	dbPath := filepath.Join(dir, "dspool.db")
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("no store in %s: %w", dir, err)
	}
	lock, holder, err := tryLockDir(dir)
	if err != nil {
		return err
	}
	if holder != "" {
		return dspool.Invalid("--data", "a control plane (pid %s) is running on %s: back up through it, without --data (as an admin), or stop it first", holder, dir)
	}
	defer lock.Close()
	// VACUUM INTO writes only into an empty file: the one made for it is.
	return store.BackupFile(ctx, dbPath, file)
}

func (a *App) restoreCmd() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "restore FILE --data DIR",
		Short: "Put a backup of the store in a new data directory",
		Long: `Put the store copied by dspool backup into the data directory DIR (made if
missing), for dspool up or dspool server to start on. A directory that holds
a store already is refused, naming it: restore into a new one.

Copy into DIR, from the old data directory or its backup, before the first
start: secrets.key (the key the store's secrets are sealed under; dspool
refuses to start without it when the store holds secrets), tls/ (the CA that
agents and logins trust) and ssh_host_ed25519_key (the host key users'
known_hosts hold).`,
		Example: "  dspool restore /backups/dspool.db --data /var/lib/dspool-restored",
		Args:    args(1, 1, "the backup to restore", "dspool restore /backups/dspool.db --data /var/lib/dspool"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if data == "" {
				return dspool.Invalid("--data", "give the new data directory to restore into")
			}
			// Traversable, not listable, as dspool up makes it (see
			// startPlane).
			if err := os.MkdirAll(data, 0o711); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			lock, holder, err := tryLockDir(data)
			if err != nil {
				return err
			}
			if holder != "" {
				return dspool.Invalid("--data", "a control plane (pid %s) is running on %s: restore into a new data directory", holder, data)
			}
			defer lock.Close()
			dbPath := filepath.Join(data, "dspool.db")
			info, err := store.Restore(cmd.Context(), argv[0], dbPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "restored %s into %s: %s\n", argv[0], dbPath, holds(info))
			a.restoreNotes(data, info)
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "", "the new data directory")
	return c
}

// restoreNotes says what the restored store needs beside it before it
// starts, and what it has.
func (a *App) restoreNotes(data string, info *store.BackupInfo) {
	have := func(name string) bool {
		_, err := os.Lstat(filepath.Join(data, name))
		return err == nil
	}
	var todo []string
	if len(info.SecretKeys) > 0 {
		key := filepath.Join(data, "secrets.key")
		k, err := secrets.ReadKeyFile(key)
		switch {
		case errors.Is(err, os.ErrNotExist):
			todo = append(todo, fmt.Sprintf("secrets.key: its %d secrets are sealed under key %s, and cannot be opened without it (or give the key in %s)",
				info.Secrets, strings.Join(info.SecretKeys, ", "), secrets.EnvVar))
		case err != nil:
			todo = append(todo, fmt.Sprintf("secrets.key: %v", err))
		case !slices.Contains(info.SecretKeys, k.ID()):
			todo = append(todo, fmt.Sprintf("secrets.key: %s holds key %s, but the secrets are sealed under %s: copy the key of the pool backed up",
				key, k.ID(), strings.Join(info.SecretKeys, ", ")))
		}
	}
	if !have("tls") {
		todo = append(todo, "tls/: the CA that agents and logins trust; without it a new CA is made, and every agent and login must be given its pin anew")
	}
	if !have("ssh_host_ed25519_key") {
		todo = append(todo, "ssh_host_ed25519_key: the SSH host key users' known_hosts hold; without it a new one is made, and ssh warns them")
	}
	if len(todo) > 0 {
		fmt.Fprintf(a.Stdout, "before starting dspool on %s, copy into it from the old data directory (or its backup):\n", data)
		for _, t := range todo {
			fmt.Fprintf(a.Stdout, "  %s\n", t)
		}
	}
	fmt.Fprintf(a.Stdout, "then: dspool up --data %s (or dspool server, with data: %s)\n", data, data)
}

// holds says what a copy of the store holds.
func holds(info *store.BackupInfo) string {
	return fmt.Sprintf("%s, %s, %s", dspool.Plural(info.Users, "user"), dspool.Plural(info.Jobs, "job"), dspool.Plural(info.Secrets, "secret"))
}
