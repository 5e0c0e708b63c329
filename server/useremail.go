package server

import (
	"context"
	"net/http"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// Users' emails: what single sign-on maps a verified email to.

func (s *Server) setUserEmail(w http.ResponseWriter, r *http.Request) {
	var req api.EmailSet
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	email, err := dspool.NormalizeEmail("email", req.Email)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	if err := s.db.SetUserEmail(r.Context(), name, email); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("email changed", "user", name, "email", email, "by", userFrom(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

// checkNewEmail checks the email of a user about to be created: valid,
// and no other user's.
func (s *Server) checkNewEmail(ctx context.Context, email string) (string, error) {
	email, err := dspool.NormalizeEmail("email", email)
	if err != nil || email == "" {
		return email, err
	}
	if u, err := s.db.UserByEmail(ctx, email); err == nil {
		return "", dspool.Errorf(dspool.EConflict, "user %s has the email %s", u.Name, email)
	}
	return email, nil
}

// withEmails fills in users' recorded emails.
func (s *Server) withEmails(ctx context.Context, users []*dspool.User) error {
	emails, err := s.db.UserEmails(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		u.Email = emails[u.ID]
	}
	return nil
}
