package server

import (
	"context"
	"crypto/rsa"
	"net/http"
	"strings"
	"unicode"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/password"
	"github.com/dspool/dspool/store"
	"golang.org/x/crypto/ssh"
)

// MaxKeyLine bounds one authorized_keys line (an RSA 16384-bit key is
// about 2.8 KiB).
const MaxKeyLine = 16 << 10

// ParseKey parses one public key in authorized_keys format ("TYPE BASE64
// [COMMENT]"), the contents of a .pub file. Options, certificates, DSA
// and RSA keys under 2048 bits are refused; errors name the field "key".
func ParseKey(line string) (*dspool.SSHKey, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, dspool.Invalid("key", "is empty: give the contents of a public key file, e.g. ~/.ssh/id_ed25519.pub")
	}
	if len(line) > MaxKeyLine {
		return nil, dspool.Invalid("key", "is %d bytes: at most %d", len(line), MaxKeyLine)
	}
	if strings.HasPrefix(line, "-----BEGIN") {
		return nil, dspool.Invalid("key", "looks like a private key: give the public key (the .pub file) and keep the private key to yourself")
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, dspool.Invalid("key", "is not a public key in authorized_keys format (%v): give the contents of a .pub file", err)
	}
	if len(options) > 0 {
		return nil, dspool.Invalid("key", "has options (%s): give the key alone, as in a .pub file", strings.Join(options, ","))
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, dspool.Invalid("key", "holds more than one key: add them one at a time")
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
	case ssh.KeyAlgoRSA:
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return nil, dspool.Invalid("key", "is an RSA key that cannot be read")
		}
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); !ok || rk.N.BitLen() < 2048 {
			return nil, dspool.Invalid("key", "is an RSA key under 2048 bits: make a new key with ssh-keygen -t ed25519")
		}
	default:
		return nil, dspool.Invalid("key", "is of type %s, which dspool does not accept: use ed25519, ecdsa or rsa (2048 bits or more)", pub.Type())
	}
	comment = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, comment)
	if len(comment) > 200 {
		comment = comment[:200]
	}
	return &dspool.SSHKey{Type: pub.Type(), Fingerprint: ssh.FingerprintSHA256(pub), Comment: comment,
		Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}, nil
}

func (s *Server) addKey(w http.ResponseWriter, r *http.Request) {
	var req api.KeyAdd
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	target, err := s.target(r, req.User, "adds keys")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := ParseKey(req.Key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	k.User = target
	out, err := s.db.AddKey(r.Context(), k)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("ssh key added", "user", target, "fingerprint", out.Fingerprint, "by", userFrom(r).Name)
	s.audit(r, "", dspool.AuditKeyAdd, KeyCredential(out.Fingerprint), dspool.AuditSuccess, "of user "+target)
	writeJSON(w, http.StatusCreated, out)
}

// target is the user a request acts for: the caller, or the user named by
// an admin.
func (s *Server) target(r *http.Request, name, what string) (string, error) {
	caller := userFrom(r)
	if name == "" || name == caller.Name {
		return caller.Name, nil
	}
	if !caller.Admin {
		return "", dspool.Errorf(dspool.EForbidden, "only an admin %s for other users", what)
	}
	if _, err := s.db.User(r.Context(), name); err != nil {
		return "", err
	}
	return name, nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if r.URL.Query().Get("all") == "true" {
		if !userFrom(r).Admin {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin lists every user's keys"))
			return
		}
	} else {
		var err error
		if user, err = s.target(r, user, "lists keys"); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	keys, err := s.db.Keys(r.Context(), user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

func (s *Server) removeKey(w http.ResponseWriter, r *http.Request) {
	user := userFrom(r).Name
	if userFrom(r).Admin {
		user = "" // any user's key
	}
	k, err := s.db.RemoveKey(r.Context(), user, r.PathValue("key"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("ssh key removed", "user", k.User, "fingerprint", k.Fingerprint, "by", userFrom(r).Name)
	s.audit(r, "", dspool.AuditKeyRemove, KeyCredential(k.Fingerprint), dspool.AuditSuccess, "of user "+k.User)
	s.endCredential(k.User, KeyCredential(k.Fingerprint), "the key it used, "+k.Fingerprint+", was removed by "+userFrom(r).Name)
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r)
	pg, err := parsePage(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := store.SessionFilter{User: u.Name, Active: r.URL.Query().Get("ended") != "true", Limit: pg.limit, Before: pg.before}
	if r.URL.Query().Get("all") == "true" {
		if !u.Admin {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin lists every user's sessions"))
			return
		}
		f.User = ""
	}
	list, err := s.db.SessionPage(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, x := range list.Items {
		s.sessions.decorate(x)
	}
	writeJSON(w, http.StatusOK, api.SessionList{Sessions: list.Items, Next: list.Next})
}

// session returns a session the caller may see: their own, or any for an
// admin; another user's is not found.
func (s *Server) session(r *http.Request) (*dspool.Session, error) {
	x, err := s.db.Session(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if u := userFrom(r); !u.Admin && x.User != u.Name {
		return nil, dspool.Errorf(dspool.ENotFound, "session %s not found: list yours with `dspool session list`", r.PathValue("id"))
	}
	s.sessions.decorate(x)
	return x, nil
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	x, err := s.session(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, x)
}

func (s *Server) killSession(w http.ResponseWriter, r *http.Request) {
	x, err := s.session(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if x.State != dspool.SessionEnded {
		s.sessions.kill(x.ID, "ended by "+userFrom(r).Name+" with `dspool session kill`")
		if x.User != userFrom(r).Name {
			s.audit(r, "", dspool.AuditSessionKill, "session "+x.ID, dspool.AuditSuccess, "of user "+x.User)
		}
	}
	x, err = s.db.Session(r.Context(), x.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, x)
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) {
	var req api.PasswordSet
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	target, err := s.target(r, name, "sets passwords")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hash := ""
	if req.Password != "" {
		if hash, err = password.Hash(req.Password); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if err := s.db.SetPassword(r.Context(), target, hash); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("password changed", "user", target, "by", userFrom(r).Name, "removed", hash == "")
	detail := "set"
	if hash == "" {
		detail = "removed"
	}
	s.audit(r, "", dspool.AuditPasswordSet, "user "+target, dspool.AuditSuccess, detail)
	w.WriteHeader(http.StatusNoContent)
}

// passwordChecks bounds concurrent password checks: each takes 19 MiB and
// tens of milliseconds of cpu, and a flood of guesses must not starve the
// control plane.
var passwordChecks = make(chan struct{}, 4)

// checkPassword is AuthenticatePassword without its throttles.
func (s *Server) checkPassword(ctx context.Context, login dspool.Login, pw string) (*dspool.User, error) {
	select {
	case passwordChecks <- struct{}{}:
		defer func() { <-passwordChecks }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	hash, err := s.db.PasswordHash(ctx, login.User)
	if err != nil || hash == "" {
		_ = password.VerifyMissing(pw)
		return nil, dspool.Errorf(dspool.EUnauthorized, "wrong user or password")
	}
	if err := password.Verify(hash, pw); err != nil {
		return nil, dspool.Errorf(dspool.EUnauthorized, "wrong user or password")
	}
	u, err := s.db.User(ctx, login.User)
	if err == nil && u.Disabled {
		return u, disabledError(u.Name)
	}
	return u, err
}
