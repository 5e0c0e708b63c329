package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
)

// Work tokens: the API token a job's attempt or an interactive session gets
// in DSPOOL_TOKEN, so that code running on the pool (a notebook cell, a job
// that submits jobs) calls the API as its user with no setup. A work token
// is not stored anywhere: it is an HMAC, under the control plane's work
// token key, of the work it belongs to and of its user, so the same attempt
// or session always has the same token and nothing is written when work
// starts. It is good only while that work runs: every request it makes
// checks that the attempt is still the job's running attempt, or that the
// session is still live, so it dies with the work, whatever happens to
// the node (docs/decisions/0021-work-tokens.md).

const workTokenPrefix = "dspw_"

// workTokenScopes are what a work token may do: read, run jobs and
// notebooks. Never account (work could then add an SSH key or make a token
// that outlives it) and never admin: its user acts as no admin, whoever it
// is.
var workTokenScopes = []string{dspool.ScopeRead, dspool.ScopeJobs, dspool.ScopeSessions}

// workTokens makes and checks work tokens with one key.
type workTokens struct{ key []byte }

// newWorkTokens returns work tokens under key; a nil key means a random one
// for this process, whose tokens stop working when it stops.
func newWorkTokens(key []byte) workTokens {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			panic(err)
		}
	}
	return workTokens{key: key}
}

// workRef is the work a token belongs to: a job's attempt, or a session.
type workRef struct {
	job     int64
	attempt int
	session string
	user    string // its user's name
}

// String names the work in messages and records ("job 12 attempt 1").
func (r workRef) String() string {
	if r.session != "" {
		return "session " + r.session
	}
	return fmt.Sprintf("job %d attempt %d", r.job, r.attempt)
}

// encode is the token's part before its MAC.
func (r workRef) encode() string {
	if r.session != "" {
		return "s." + r.session + "." + r.user
	}
	return "j." + strconv.FormatInt(r.job, 10) + "." + strconv.Itoa(r.attempt) + "." + r.user
}

func (w workTokens) mac(ref string) []byte {
	m := hmac.New(sha256.New, w.key)
	m.Write([]byte("dspool work token 1\x00" + ref))
	return m.Sum(nil)
}

func (w workTokens) make(r workRef) string {
	ref := r.encode()
	return workTokenPrefix + ref + "." + base64.RawURLEncoding.EncodeToString(w.mac(ref))
}

// attempt is the token of a job's attempt, session that of a session.
func (w workTokens) attempt(job int64, attempt int, user string) string {
	return w.make(workRef{job: job, attempt: attempt, user: user})
}

func (w workTokens) session(id, user string) string {
	return w.make(workRef{session: id, user: user})
}

// parse returns the work of a token this key made; false for anything
// else (mistyped, forged, another pool's).
func (w workTokens) parse(secret string) (workRef, bool) {
	body, ok := strings.CutPrefix(secret, workTokenPrefix)
	i := strings.LastIndexByte(body, '.')
	if !ok || i < 0 {
		return workRef{}, false
	}
	ref, sum := body[:i], body[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sum)
	if err != nil || !hmac.Equal(got, w.mac(ref)) {
		return workRef{}, false
	}
	f := strings.Split(ref, ".")
	var r workRef
	var err1, err2 error
	switch {
	case len(f) == 4 && f[0] == "j":
		r.job, err1 = strconv.ParseInt(f[1], 10, 64)
		r.attempt, err2 = strconv.Atoi(f[2])
		r.user = f[3]
	case len(f) == 3 && f[0] == "s":
		r.session, r.user = f[1], f[2]
	default:
		return workRef{}, false
	}
	return r, err1 == nil && err2 == nil && dspool.ValidName(r.user)
}

// workCaller returns the user and token of a work token: its user, as no
// admin, with workTokenScopes, while its work runs. Who the user is is
// cached as for other tokens (disabling the user drops it); whether the
// work runs is asked at every request.
func (s *Server) workCaller(ctx context.Context, secret string) (*dspool.User, *dspool.Token, error) {
	r, ok := s.workTokens.parse(secret)
	if !ok {
		return nil, nil, dspool.Errorf(dspool.EUnauthorized, "work token not recognised: it is mistyped, of another pool, or was made under another work token key; the token a job or session gets is in its DSPOOL_TOKEN")
	}
	hash := HashSecret(secret)
	u, t, cached := s.auth.getToken(hash)
	if !cached {
		var err error
		u, err = s.db.User(ctx, r.user)
		if dspool.ErrorCode(err) == dspool.ENotFound {
			return nil, nil, dspool.Errorf(dspool.EUnauthorized, "the user of %s's token is gone", r)
		}
		if err != nil {
			return nil, nil, err
		}
		// Running work acts as its user, never as an admin: an admin's
		// notebook sees and cancels only the admin's own jobs.
		plain := *u
		plain.Admin = false
		u = &plain
		t = &dspool.Token{User: u.Name, Name: r.String(), Scopes: dspool.EffectiveScopes(workTokenScopes, false)}
		s.auth.putToken(hash, u, t)
	}
	if err := s.workRuns(ctx, r); err != nil {
		return nil, nil, err
	}
	if u.Disabled {
		return nil, nil, disabledError(u.Name)
	}
	return u, t, nil
}

// workRuns returns nil while the work of r runs, as its user, else an
// EUnauthorized error that says the token ended with it.
func (s *Server) workRuns(ctx context.Context, r workRef) error {
	const own = "a token of your own (`dspool token create`) works outside the pool"
	if r.session != "" {
		if s.sessions.liveFor(ctx, r.session, r.user) {
			return nil
		}
		return dspool.Errorf(dspool.EUnauthorized, "this token was %s's, which has ended: a session's token works only while the session lasts; %s", r, own)
	}
	j, err := s.db.Job(ctx, r.job)
	if dspool.ErrorCode(err) == dspool.ENotFound {
		return dspool.Errorf(dspool.EUnauthorized, "this token was %s's, and the job is gone", r)
	}
	if err != nil {
		return err
	}
	if j.User != r.user || j.Attempt != r.attempt || j.State != dspool.JobRunning {
		return dspool.Errorf(dspool.EUnauthorized, "this token was %s's, which has ended: a job's token works only while its attempt runs; %s", r, own)
	}
	return nil
}

// liveFor reports whether session id is live and user's. Before the
// sessions of the previous run are taken up, the store says.
func (sm *sessions) liveFor(ctx context.Context, id, user string) bool {
	sm.mu.Lock()
	l := sm.live[id]
	live := l != nil && !l.ended && l.rec.User == user
	recovered := sm.recovered
	sm.mu.Unlock()
	if live || recovered {
		return live
	}
	rec, err := sm.s.db.Session(ctx, id)
	return err == nil && rec.User == user && rec.EndedAt == nil
}
