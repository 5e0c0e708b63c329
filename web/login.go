package web

import (
	"net/http"

	"github.com/dspool/dspool"
)

// Login is what the login form shows.
type Login struct {
	// Error says why the last try failed or the login ended ("": none).
	Error string
	// Name is the user name to fill in again after a failed try.
	Name string
	// Next is where the login returns to (a Returnable path; "": home).
	Next string
	// SSO names the identity provider of single sign-on ("" when off);
	// SSODown says it cannot be reached now; NoPassword that password
	// logins are off.
	SSO        string
	SSODown    bool
	NoPassword bool
}

// LoginPage answers with the login form, with status (the control plane's
// answer to a failed try).
func (d *Dashboard) LoginPage(w http.ResponseWriter, r *http.Request, status int, l Login) {
	offer := d.o.Logins.LoginOffer()
	l.SSO, l.SSODown, l.NoPassword = offer.SSO, offer.SSODown, offer.NoPassword
	if !Returnable(l.Next) {
		l.Next = ""
	}
	d.render(w, r, status, "login", nil, "Log in", l)
}

// loginForm is the home page of a browser without a login: the form, and
// why a login it had ended.
func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request, err error) {
	l := Login{Next: r.URL.Query().Get("next")}
	if _, cerr := r.Cookie(SessionCookie); cerr == nil && dspool.ErrorCode(err) == dspool.EUnauthorized {
		l.Error = sentence(dspool.Message(err))
	}
	d.LoginPage(w, r, http.StatusOK, l)
}

// SessionCookie is the cookie of a browser's login.
const SessionCookie = "dspool_session"
