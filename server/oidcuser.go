package server

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/dspool/dspool"
)

// ssoUser maps a checked identity to its dspool user.
//
// With the claim "email" (the default) the provider's email, which it must
// say is verified, is looked up among the emails admins recorded
// (`dspool user create NAME --email E`, `dspool user email NAME E`); there
// is no guessing from names. With another claim (preferred_username, say)
// its value is the dspool user's name, exactly. An identity that maps to no
// user is refused, unless CreateUsers is set: then a user is created with
// the next uid, named by the claim (for an email, its local part made into
// a valid name), never taking over an existing user of that name.
func (s *Server) ssoUser(ctx context.Context, id ssoIdentity) (*dspool.User, error) {
	cfg := &s.sso.cfg
	needEmail := cfg.Claim == "email" || len(cfg.AllowedDomains) > 0
	email, err := dspool.NormalizeEmail("email", id.email)
	if err != nil && needEmail {
		return nil, refuse("bad_email", http.StatusUnauthorized, "%s gave an email address dspool cannot use (%q).", s.sso.name, id.email)
	}
	if needEmail {
		switch {
		case email == "":
			return nil, refuse("no_email", http.StatusUnauthorized, "%s gave no email address for your account: dspool needs one (the email scope).", s.sso.name)
		case !id.emailVerified:
			return nil, refuse("email_unverified", http.StatusUnauthorized, "Your email address at %s (%s) is not verified: verify it there, then sign in again.", s.sso.name, email)
		case len(cfg.AllowedDomains) > 0 && !slices.Contains(cfg.AllowedDomains, dspool.EmailDomain(email)):
			return nil, refuse("domain_not_allowed", http.StatusForbidden, "Accounts of %s may not sign in to this pool: only those in %s.", dspool.EmailDomain(email), strings.Join(cfg.AllowedDomains, ", "))
		}
	}
	if !id.emailVerified {
		email = "" // recorded on a new user only when the provider vouches for it
	}
	var name string
	var u *dspool.User
	if cfg.Claim == "email" {
		u, err = s.db.UserByEmail(ctx, email)
		name = nameFromEmail(email)
	} else {
		name, _ = id.claims[cfg.Claim].(string)
		if name == "" {
			return nil, refuse("no_claim", http.StatusUnauthorized, "%s gave no %s for your account, which names your dspool user.", s.sso.name, cfg.Claim)
		}
		u, err = s.db.User(ctx, name)
	}
	if err == nil && u.Disabled {
		return nil, refuse("user_disabled", http.StatusForbidden, "Your dspool user %s is disabled: ask an admin.", u.Name)
	}
	if err == nil {
		return u, nil
	}
	if dspool.ErrorCode(err) != dspool.ENotFound {
		return nil, err
	}
	if !cfg.CreateUsers {
		return nil, s.notLinked(email, name)
	}
	return s.ssoCreate(ctx, name, email, id.subject)
}

func (s *Server) notLinked(email, name string) *ssoRefusal {
	if s.sso.cfg.Claim == "email" {
		if name == "" {
			name = "NAME"
		}
		return refuse("not_linked", http.StatusForbidden, "Your account at %s (%s) is not linked to a dspool user: ask an admin to run `dspool user create %s --email %s` (or `dspool user email NAME %s` for an existing user).",
			s.sso.name, email, name, email, email)
	}
	return refuse("not_linked", http.StatusForbidden, "Your account at %s (%s %q) is not linked to a dspool user: ask an admin to run `dspool user create %s`.",
		s.sso.name, s.sso.cfg.Claim, name, name)
}

// ssoCreate creates the user of a new identity (subject at the provider).
func (s *Server) ssoCreate(ctx context.Context, name, email, subject string) (*dspool.User, error) {
	if !dspool.ValidName(name) {
		return nil, refuse("no_name", http.StatusForbidden, "No dspool user name can be made from your account at %s (%q): ask an admin to create your user.", s.sso.name, name)
	}
	if email != "" {
		if _, err := s.db.UserByEmail(ctx, email); err == nil {
			return nil, refuse("email_taken", http.StatusForbidden, "Another dspool user has the email %s: ask an admin.", email)
		}
	}
	u, err := s.db.CreateUser(ctx, name, false)
	if dspool.ErrorCode(err) == dspool.EConflict {
		return nil, refuse("name_taken", http.StatusForbidden, "A dspool user named %s exists and is not linked to your account at %s: ask an admin to link it (`dspool user email %s %s`) or to create yours.",
			name, s.sso.name, name, orNone(email))
	}
	if err != nil {
		return nil, err
	}
	if email != "" {
		if err := s.db.SetUserEmail(ctx, u.Name, email); err != nil {
			return nil, err
		}
		u.Email = email
	}
	s.log.Info("user created by single sign-on", "user", u.Name, "uid", u.UID, "email", email)
	detail := "created by single sign-on with " + s.sso.name + ", subject " + subject
	if email != "" {
		detail += ", email " + email
	}
	s.Audit(ctx, dspool.AuditEntry{Actor: dspool.AuditSystem, Action: dspool.AuditUserCreate, Target: "user " + u.Name,
		Outcome: dspool.AuditSuccess, Detail: detail})
	return u, nil
}

func orNone(s string) string {
	if s == "" {
		return "EMAIL"
	}
	return s
}

// nameFromEmail makes a user name from an email's local part: lower case,
// '.' and '_' as '-', a '+tag' dropped; "" when nothing valid remains.
func nameFromEmail(email string) string {
	local, _, _ := strings.Cut(email, "@")
	local, _, _ = strings.Cut(local, "+")
	var b strings.Builder
	for _, r := range strings.ToLower(local) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '.' || r == '_':
			b.WriteByte('-')
		}
	}
	name := strings.TrimLeft(b.String(), "0123456789-")
	if len(name) > 63 {
		name = name[:63]
	}
	return strings.TrimRight(name, "-")
}
