package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/server"
	"github.com/spf13/cobra"
)

// oidcSecretEnv holds the client secret when no file does: never a flag,
// which other users could read in ps.
const oidcSecretEnv = "DSPOOL_OIDC_CLIENT_SECRET"

// oidcOptions are single sign-on's settings: `dspool up --oidc-*` and the
// oidc section of the server's config file.
type oidcOptions struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// ClientSecretFile holds the client secret (else DSPOOL_OIDC_CLIENT_SECRET).
	ClientSecretFile string `json:"client_secret_file"`
	// ClientSecret is refused: a secret does not belong in the config.
	ClientSecret   json.RawMessage `json:"client_secret"`
	RedirectURL    string          `json:"redirect_url"`
	Name           string          `json:"name"`
	Claim          string          `json:"claim"`
	AllowedDomains []string        `json:"allowed_domains"`
	CreateUsers    bool            `json:"create_users"`
	// PasswordLogin keeps the web page's password form (default true).
	PasswordLogin *bool `json:"password_login"`

	// byFlags is set when the settings come from `dspool up`'s flags,
	// which errors then name rather than the config file's keys.
	byFlags bool
}

func (o *oidcOptions) flags(c *cobra.Command) {
	o.byFlags = true
	f := c.Flags()
	f.StringVar(&o.Issuer, "oidc-issuer", "", "single sign-on: the OpenID Connect provider's issuer URL (https)")
	f.StringVar(&o.ClientID, "oidc-client-id", "", "single sign-on: this pool's client id at the provider")
	f.StringVar(&o.ClientSecretFile, "oidc-client-secret-file", "", "single sign-on: file holding the client secret (default: "+oidcSecretEnv+"; none for a public client)")
	f.StringVar(&o.RedirectURL, "oidc-redirect-url", "", "single sign-on: the callback URL registered at the provider (default: /login/oidc/callback on the address the browser uses)")
	f.StringVar(&o.Name, "oidc-name", "", `single sign-on: the provider's name on the page, "Sign in with NAME" (default: the issuer's host)`)
	f.StringVar(&o.Claim, "oidc-claim", "", "single sign-on: the ID token claim that names the user: email (default: a verified email recorded with dspool user email) or another claim whose value is the user's name")
	f.StringSliceVar(&o.AllowedDomains, "oidc-allowed-domains", nil, "single sign-on: only verified emails in these domains may sign in")
	f.BoolVar(&o.CreateUsers, "oidc-create-users", false, "single sign-on: create a user (next uid) for an identity that maps to none")
	c.Flags().Var(boolPtrFlag{&o.PasswordLogin}, "oidc-password-login", "with single sign-on: keep the password form on the web page (default true; false: single sign-on only)")
	c.Flags().Lookup("oidc-password-login").NoOptDefVal = "true"
}

// config returns the server's single sign-on configuration, nil when off.
// Its errors name the flags (--oidc-client-id) or the config file's keys
// (oidc.client_id), whichever the settings came from.
func (o *oidcOptions) config(getenv func(string) string) (*server.OIDCConfig, error) {
	c, err := o.build(getenv)
	var e *dspool.Error
	if o.byFlags && errors.As(err, &e) {
		if key, ok := strings.CutPrefix(e.Field, "oidc."); ok {
			named := *e
			named.Field = oidcFlag(key)
			return nil, &named
		}
	}
	return c, err
}

// oidcFlag is the flag of a key of the oidc section: client_id is
// --oidc-client-id, allowed_domains[1] is --oidc-allowed-domains.
func oidcFlag(key string) string {
	key, _, _ = strings.Cut(key, "[")
	return "--oidc-" + strings.ReplaceAll(key, "_", "-")
}

func (o *oidcOptions) build(getenv func(string) string) (*server.OIDCConfig, error) {
	if len(o.ClientSecret) > 0 {
		return nil, dspool.Invalid("oidc.client_secret", "a secret does not belong in the config: put it in a file of its own (client_secret_file, mode 0600) or in %s", oidcSecretEnv)
	}
	if o.Issuer == "" {
		if o.ClientID != "" || o.ClientSecretFile != "" || o.RedirectURL != "" || o.Name != "" || o.Claim != "" || len(o.AllowedDomains) > 0 || o.CreateUsers ||
			o.PasswordLogin != nil {
			return nil, dspool.Invalid("oidc.issuer", "the single sign-on settings need the provider's issuer URL, e.g. https://sso.example.com/realms/lab")
		}
		return nil, nil
	}
	c := &server.OIDCConfig{Issuer: o.Issuer, ClientID: o.ClientID, RedirectURL: o.RedirectURL, Name: o.Name, Claim: o.Claim,
		AllowedDomains: o.AllowedDomains, CreateUsers: o.CreateUsers, NoPasswordLogin: o.PasswordLogin != nil && !*o.PasswordLogin}
	switch {
	case o.ClientSecretFile != "":
		b, err := readLimited(o.ClientSecretFile, 64<<10)
		if err != nil {
			return nil, dspool.Invalid("oidc.client_secret_file", "%v", err)
		}
		c.ClientSecret = strings.TrimSpace(string(b))
		if c.ClientSecret == "" {
			return nil, dspool.Invalid("oidc.client_secret_file", "%s is empty: put the client secret in it", o.ClientSecretFile)
		}
		if st, err := os.Stat(o.ClientSecretFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, dspool.Invalid("oidc.client_secret_file", "%s has mode %04o, so others may read the client secret: chmod 600 it", o.ClientSecretFile, st.Mode().Perm())
		}
	default:
		c.ClientSecret = getenv(oidcSecretEnv)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// boolPtrFlag is a boolean flag that tells "not given" (nil) from false.
type boolPtrFlag struct{ p **bool }

func (b boolPtrFlag) String() string {
	if b.p == nil || *b.p == nil {
		return ""
	}
	return fmt.Sprint(**b.p)
}

func (b boolPtrFlag) Set(s string) error {
	var v bool
	switch s {
	case "true", "1":
		v = true
	case "false", "0":
	default:
		return fmt.Errorf("%q is not true or false", s)
	}
	*b.p = &v
	return nil
}

func (b boolPtrFlag) Type() string { return "bool" }
