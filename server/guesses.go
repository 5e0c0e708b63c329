package server

import (
	"context"
	"math"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/frontdoor"
)

// Password guesses are throttled per address and per user name, for the
// web login and the SSH gateway alike (both call AuthenticatePassword).
// Every check counts until it succeeds: a user name gets 5 free, an
// address 20 (an office behind one NAT address shares them), then each
// check closes the door for 1 s, doubling up to 5 min; one check is
// forgotten per minute. A refusal costs no password hash.
const (
	userFreeGuesses = 5
	addrFreeGuesses = 20
	guessWait       = time.Second
	guessMaxWait    = 5 * time.Minute
	guessLeak       = time.Minute
)

// guesses are the throttles of password checks.
type guesses struct {
	byAddr, byUser *frontdoor.Throttle
}

func newGuesses(now func() time.Time) guesses {
	return guesses{
		byAddr: &frontdoor.Throttle{Free: addrFreeGuesses, Base: guessWait, Max: guessMaxWait, Leak: guessLeak, Now: now},
		byUser: &frontdoor.Throttle{Free: userFreeGuesses, Base: guessWait, Max: guessMaxWait, Leak: guessLeak, Now: now},
	}
}

// attempt counts a password check of user from remote, or refuses it.
func (g guesses) attempt(user, remote string) error {
	if d := g.byAddr.Attempt(frontdoor.SourceOf(remote)); d > 0 {
		return &ThrottledError{wait: d, why: "from your address"}
	}
	if d := g.byUser.Attempt(user); d > 0 {
		return &ThrottledError{wait: d, why: "for this user"}
	}
	return nil
}

// succeeded forgets user's failures (the right password proves who they
// are) and takes back the address's count of this check: its other
// failures stay, so that one's own account does not open the door for
// guesses at others'.
func (g guesses) succeeded(user, remote string) {
	g.byUser.Reset(user)
	g.byAddr.Forgive(frontdoor.SourceOf(remote))
}

// ThrottledError refuses a password check that came too soon after
// failed ones. It is an EUnavailable *dspool.Error to errors.As, whose
// message leaves out the wait (the audit log aggregates refusals with the
// same message): those who tell the client add it.
type ThrottledError struct {
	wait time.Duration
	why  string
}

func (e *ThrottledError) Error() string { return e.Unwrap().Error() }

func (e *ThrottledError) Unwrap() error {
	return dspool.Errorf(dspool.EUnavailable, "too many failed password logins %s", e.why)
}

// RetryAfter is how long until the next check may be made.
func (e *ThrottledError) RetryAfter() time.Duration { return e.wait }

// Seconds is RetryAfter in whole seconds, rounded up (Retry-After's unit).
func (e *ThrottledError) Seconds() int { return int(math.Ceil(e.wait.Seconds())) }

// AuthenticatePassword returns the user a login names when pw is their
// password; remote is the address the check came from ("HOST:PORT").
// Checks are throttled per address and per user (a *ThrottledError).
// Unknown users and users without a password take as long to refuse as a
// wrong password. A disabled user's right password gives the user
// (Disabled set) with the error that refuses it, so that the caller may
// tell them why, and only them.
func (s *Server) AuthenticatePassword(ctx context.Context, login dspool.Login, pw, remote string) (*dspool.User, error) {
	if err := s.guesses.attempt(login.User, remote); err != nil {
		return nil, err
	}
	u, err := s.checkPassword(ctx, login, pw)
	if u != nil {
		s.guesses.succeeded(login.User, remote)
	}
	return u, err
}
