package cli

import (
	"fmt"
	"strings"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) userEmailCmd() *cobra.Command {
	var remove bool
	c := &cobra.Command{
		Use:   "email NAME [EMAIL]",
		Short: "Record the email single sign-on maps to a user (admin)",
		Long: `Record a user's email address. With single sign-on (oidc.claim email, the
default), a browser signing in at the identity provider with this address,
verified there, is logged in as this user. An address belongs to one user;
--remove unlinks it.`,
		Args: args(1, 2, "a user name and an email", "dspool user email alice alice@example.com"),
		Example: `  dspool user email alice alice@example.com
  dspool user email alice --remove`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 2) == remove {
				return dspool.Invalid("email", "give either an email or --remove; e.g. dspool user email alice alice@example.com")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			email := ""
			if !remove {
				email = args[1]
			}
			if err := cl.SetUserEmail(cmd.Context(), args[0], email); err != nil {
				return err
			}
			if remove {
				fmt.Fprintf(a.Stderr, "email of %s removed\n", args[0])
			} else {
				fmt.Fprintf(a.Stderr, "email of %s set to %s\n", args[0], strings.ToLower(email))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&remove, "remove", false, "remove the user's email: no single sign-on by email")
	return c
}
