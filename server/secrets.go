package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/secrets"
	"github.com/dspool/dspool/store"
)

// Secrets. A value arrives in a PUT, is sealed under the keyring's key and
// stored; it is opened again only to go, over an agent's connection, to the
// attempt or session that asks for it. Every write, delete, rotation and
// delivery is in the audit log, by name: no value is ever logged, answered
// or kept in the clear.

// keyring returns the control plane's key, or why there is none.
func (s *Server) keyring() (*secrets.Keyring, error) {
	if s.cfg.Secrets == nil {
		return nil, dspool.Errorf(dspool.EUnavailable, "this control plane has no secrets key, so it keeps no secrets: start it with a data directory (DATA/secrets.key) or %s", secrets.EnvVar)
	}
	return s.cfg.Secrets, nil
}

// secretOwner is the owner of a secret a request names: the caller, or a
// team the caller is a member of. Another team is not found, so that its
// existence does not leak.
func (s *Server) secretOwner(ctx context.Context, u *dspool.User, team string) (kind, owner string, err error) {
	if team == "" {
		return secrets.OwnerUser, u.Name, nil
	}
	if err := dspool.ValidateName("team", team); err != nil {
		return "", "", err
	}
	if err := s.memberOf(ctx, u.Name, team); err != nil {
		return "", "", err
	}
	return secrets.OwnerTeam, team, nil
}

func (s *Server) setSecret(w http.ResponseWriter, r *http.Request) {
	kr, err := s.keyring()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	if err := dspool.ValidateSecretName("name", name); err != nil {
		s.fail(w, r, err)
		return
	}
	var req api.SecretSet
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	defer clear(req.Value)
	switch {
	case len(req.Value) == 0:
		err = dspool.Invalid("value", "is empty: give the secret's value (dspool secret set reads it from standard input)")
	case len(req.Value) > dspool.MaxSecretValue:
		err = dspool.Invalid("value", "is %d bytes: at most %d", len(req.Value), dspool.MaxSecretValue)
	case req.SessionEnv != "":
		err = dspool.ValidateSecretEnv("session_env", req.SessionEnv)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	u := userFrom(r)
	kind, owner, err := s.secretOwner(r.Context(), u, req.Team)
	if err == nil && kind == secrets.OwnerTeam {
		err = s.mayChangeTeamSecret(r.Context(), u, owner, name, "replaces")
	}
	if err != nil {
		s.audit(r, "", dspool.AuditSecretWrite, "secret "+(&dspool.Secret{Name: name, Team: req.Team}).Ref(), dspool.AuditFailure, dspool.Message(err))
		s.fail(w, r, err)
		return
	}
	in := &store.SealedSecret{Secret: dspool.Secret{Name: name, SessionEnv: req.SessionEnv, SessionFile: req.SessionFile, CreatedBy: u.Name}}
	if kind == secrets.OwnerTeam {
		in.Team = owner
	} else {
		in.User = owner
	}
	var out *store.SealedSecret
	var created bool
	err = kr.Use(func(k *secrets.Key) error {
		sealed, err := k.Seal(req.Value, secrets.AAD(kind, owner, name))
		if err != nil {
			return err
		}
		in.KeyID, in.Nonce, in.Ciphertext = sealed.KeyID, sealed.Nonce, sealed.Ciphertext
		out, created, err = s.db.PutSecret(r.Context(), in)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	what, status := "replaced", http.StatusOK
	if created {
		what, status = "created", http.StatusCreated
	}
	s.audit(r, "", dspool.AuditSecretWrite, "secret "+out.Ref(), dspool.AuditSuccess, what)
	s.log.Info("secret "+what, "secret", out.Ref(), "by", u.Name)
	writeJSON(w, status, &out.Secret)
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r)
	teams, err := s.teamsOf(r.Context(), u.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all, err := s.db.SecretsOf(r.Context(), u.Name, teams)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.SecretList{Secrets: make([]*dspool.Secret, len(all))}
	for i, x := range all {
		out.Secrets[i] = &x.Secret
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := dspool.ValidateSecretName("name", name); err != nil {
		s.fail(w, r, err)
		return
	}
	u := userFrom(r)
	team := r.URL.Query().Get("team")
	kind, owner, err := s.secretOwner(r.Context(), u, team)
	var x *store.SealedSecret
	if err == nil {
		x, err = s.db.SecretOf(r.Context(), kind, owner, name)
	}
	if err == nil && kind == secrets.OwnerTeam {
		err = s.mayChangeTeamSecret(r.Context(), u, owner, name, "deletes")
	}
	if err == nil {
		err = s.db.DeleteSecret(r.Context(), kind, owner, name)
	}
	if err != nil {
		if c := dspool.ErrorCode(err); c == dspool.ENotFound || c == dspool.EInvalid || c == dspool.EForbidden {
			s.audit(r, "", dspool.AuditSecretDelete, "secret "+(&dspool.Secret{Name: name, Team: team}).Ref(), dspool.AuditFailure, dspool.Message(err))
		}
		s.fail(w, r, err)
		return
	}
	s.audit(r, "", dspool.AuditSecretDelete, "secret "+x.Ref(), dspool.AuditSuccess, "")
	s.log.Info("secret deleted", "secret", x.Ref(), "by", u.Name)
	writeJSON(w, http.StatusOK, &x.Secret)
}

// rotateSecretsKey re-encrypts every secret under a new key in one
// transaction; the old key opens none of them afterwards.
func (s *Server) rotateSecretsKey(w http.ResponseWriter, r *http.Request) {
	kr, err := s.keyring()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	old := kr.KeyID()
	next, n, err := kr.Rotate(func(old, next *secrets.Key) (int, error) {
		return s.db.ResealSecrets(r.Context(), func(x *store.SealedSecret) error {
			kind, owner := x.Owner()
			aad := secrets.AAD(kind, owner, x.Name)
			p, err := old.Open(secrets.Sealed{KeyID: x.KeyID, Nonce: x.Nonce, Ciphertext: x.Ciphertext}, aad)
			if err != nil {
				return fmt.Errorf("secret %s of %s %s: %w", x.Name, kind, owner, err)
			}
			sealed, err := next.Seal(p, aad)
			clear(p)
			if err != nil {
				return err
			}
			x.KeyID, x.Nonce, x.Ciphertext = sealed.KeyID, sealed.Nonce, sealed.Ciphertext
			return nil
		})
	})
	if next == nil {
		s.fail(w, r, err)
		return
	}
	if err != nil {
		// The secrets are under the new key; only the file's rename failed.
		s.log.Error("secrets key rotated, but its file was not replaced", "err", err)
	}
	u := userFrom(r)
	s.audit(r, "", dspool.AuditSecretRotateKey, "key "+next.ID(), dspool.AuditSuccess,
		fmt.Sprintf("%d secrets re-encrypted from key %s", n, old))
	s.log.Info("secrets key rotated", "key", next.ID(), "previous", old, "secrets", n, "by", u.Name)
	writeJSON(w, http.StatusOK, api.KeyRotation{KeyID: next.ID(), Secrets: n})
}

// checkSecrets refuses a submission that asks for a secret its user cannot
// use, naming the field. It opens nothing: values are read at each start.
func (s *Server) checkSecrets(ctx context.Context, u *dspool.User, uses []dspool.SecretUse) error {
	if len(uses) == 0 {
		return nil
	}
	if _, err := s.keyring(); err != nil {
		return err
	}
	for i, use := range uses {
		field := fmt.Sprintf("secrets[%d].secret", i)
		_, err := s.findSecret(ctx, u.Name, use.Secret)
		if c := dspool.ErrorCode(err); c == dspool.ENotFound || c == dspool.EInvalid {
			return dspool.Invalid(field, "%s", dspool.Message(err))
		} else if err != nil {
			return err
		}
	}
	return nil
}

// findSecret returns the secret ref names for user: their own (NAME), or
// one of a team they are a member of (TEAM/NAME).
func (s *Server) findSecret(ctx context.Context, user, ref string) (*store.SealedSecret, error) {
	team, name, err := dspool.ParseSecretRef("secret", ref)
	if err != nil {
		return nil, err
	}
	if team == "" {
		x, err := s.db.SecretOf(ctx, secrets.OwnerUser, user, name)
		if dspool.ErrorCode(err) == dspool.ENotFound {
			return nil, dspool.Errorf(dspool.ENotFound, "you have no secret named %s: create it with `dspool secret set %s`, or name a team's as TEAM/%s", name, name, name)
		}
		return x, err
	}
	if err := s.memberOf(ctx, user, team); err != nil {
		return nil, err
	}
	x, err := s.db.SecretOf(ctx, secrets.OwnerTeam, team, name)
	if dspool.ErrorCode(err) == dspool.ENotFound {
		return nil, dspool.Errorf(dspool.ENotFound, "team %s has no secret named %s: see `dspool secret list`", team, name)
	}
	return x, err
}

// openSecrets opens the secrets that uses name for user, records their
// reading in the store and the audit log (for what: "job 3 attempt 1 on
// node gpu-1"), and returns their values. A secret that is gone, or that
// the user may no longer use, is an error that names it.
func (s *Server) openSecrets(ctx context.Context, user string, uses []dspool.SecretUse, what string) ([]api.SecretValue, error) {
	if len(uses) == 0 {
		return nil, nil
	}
	kr, err := s.keyring()
	if err != nil {
		return nil, err
	}
	out := make([]api.SecretValue, 0, len(uses))
	ids := make([]int64, 0, len(uses))
	err = kr.Use(func(k *secrets.Key) error {
		for _, use := range uses {
			x, err := s.findSecret(ctx, user, use.Secret)
			if c := dspool.ErrorCode(err); c == dspool.ENotFound || c == dspool.EInvalid {
				return unusableSecret{fmt.Errorf("secret %s: %s", use.Secret, dspool.Message(err))}
			} else if err != nil {
				return err
			}
			kind, owner := x.Owner()
			p, err := k.Open(secrets.Sealed{KeyID: x.KeyID, Nonce: x.Nonce, Ciphertext: x.Ciphertext}, secrets.AAD(kind, owner, x.Name))
			if err != nil {
				return unusableSecret{fmt.Errorf("secret %s does not open: %w", use.Secret, err)}
			}
			v := api.SecretValue{Secret: use.Secret, Env: use.Env, Value: p}
			if use.File {
				v.File = x.Name
			} else if bytes.IndexByte(p, 0) >= 0 {
				clear(p)
				return unusableSecret{fmt.Errorf("secret %s holds a NUL byte, which an environment variable cannot: give it as a file (--secret-file %s)", use.Secret, use.Secret)}
			}
			out = append(out, v)
			ids = append(ids, x.ID)
		}
		return nil
	})
	if err == nil {
		err = s.db.SecretsRead(ctx, ids, s.cfg.Now())
	}
	for i := 0; err == nil && i < len(out); i++ {
		where := "env " + out[i].Env
		if out[i].File != "" {
			where = "file " + out[i].File
		}
		err = s.auditRead(ctx, user, out[i].Secret, what+" ("+where+")")
	}
	if err != nil {
		wipeValues(out)
		return nil, err
	}
	return out, nil
}

// sessionSecrets opens the secrets that user gives their sessions (their
// own, and their teams'), for the session what. One that cannot be opened
// is left out, and said in the log.
func (s *Server) sessionSecrets(ctx context.Context, user, what string) []api.SecretValue {
	if s.cfg.Secrets == nil {
		return nil
	}
	teams, err := s.teamsOf(ctx, user)
	if err != nil {
		s.log.Error("secrets of a session: teams", "user", user, "err", err)
		return nil
	}
	all, err := s.db.SecretsOf(ctx, user, teams)
	if err != nil {
		s.log.Error("secrets of a session", "user", user, "err", err)
		return nil
	}
	var out []api.SecretValue
	vars, files := map[string]bool{}, map[string]bool{}
	for _, x := range all {
		var uses []dspool.SecretUse
		// The user's own come first: theirs win a variable or file name
		// that a team's secret also wants.
		if x.SessionEnv != "" && !vars[x.SessionEnv] {
			uses = append(uses, dspool.SecretUse{Secret: x.Ref(), Env: x.SessionEnv})
			vars[x.SessionEnv] = true
		}
		if x.SessionFile && !files[x.Name] {
			uses = append(uses, dspool.SecretUse{Secret: x.Ref(), File: true})
			files[x.Name] = true
		}
		vals, err := s.openSecrets(ctx, user, uses, what)
		if err != nil {
			s.log.Warn("a secret was left out of a session", "user", user, "secret", x.Ref(), "err", err)
			continue
		}
		out = append(out, vals...)
	}
	return out
}

// mayChangeTeamSecret returns nil when u, a member of team, may replace or
// delete (does) its secret name: any member creates one, but only the
// member who created it, a maintainer of the team or an admin changes it,
// since every member's work trusts its value.
func (s *Server) mayChangeTeamSecret(ctx context.Context, u *dspool.User, team, name, does string) error {
	x, err := s.db.SecretOf(ctx, secrets.OwnerTeam, team, name)
	if dspool.ErrorCode(err) == dspool.ENotFound {
		return nil // a new one
	}
	if err != nil {
		return err
	}
	if u.Admin || x.CreatedBy == u.Name {
		return nil
	}
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return err
	}
	if t := dir.teams[team]; t != nil {
		if m := t.Member(u.Name); m != nil && m.Maintainer {
			return nil
		}
	}
	return dspool.Errorf(dspool.EForbidden, "secret %s/%s was set by %s, and only its setter, a maintainer of team %s or an admin %s it, since every member's work uses it (`dspool team show %s`)",
		team, name, x.CreatedBy, team, does, team)
}

// teamsOf returns the teams user is a member of: whose secrets they use.
func (s *Server) teamsOf(ctx context.Context, user string) ([]string, error) {
	return s.userTeams(ctx, user)
}

// memberOf returns an error unless user is a member of team: not found for
// a team of others, so that its existence does not leak.
func (s *Server) memberOf(ctx context.Context, user, team string) error {
	teams, err := s.userTeams(ctx, user)
	if err != nil {
		return err
	}
	if !slices.Contains(teams, team) {
		return dspool.Errorf(dspool.ENotFound, "you are in no team named %s: a team's secrets are its members'", team)
	}
	return nil
}

// unusableSecret is the error of a secret that work asks for and cannot
// have, however often it asks: gone, no longer the user's to use, or not
// opening under the key.
type unusableSecret struct{ err error }

func (e unusableSecret) Error() string { return e.err.Error() }
func (e unusableSecret) Unwrap() error { return e.err }

func wipeValues(vals []api.SecretValue) {
	for i := range vals {
		clear(vals[i].Value)
	}
}

// auditRead records the delivery of secret ref of user to what. Unlike
// other entries, one that cannot be written stops the delivery: no secret
// leaves unrecorded.
func (s *Server) auditRead(ctx context.Context, user, ref, what string) error {
	err := s.db.AddAudit(ctx, dspool.AuditEntry{At: s.cfg.Now(), Actor: user, Action: dspool.AuditSecretRead, Target: "secret " + ref,
		Outcome: dspool.AuditSuccess, Detail: what})
	if err != nil {
		s.log.Error("audit log", "action", dspool.AuditSecretRead, "secret", ref, "err", err)
		return fmt.Errorf("record the delivery of secret %s in the audit log: %w", ref, err)
	}
	return nil
}
