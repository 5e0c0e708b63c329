// Package oidctest is a small OpenID Connect provider for tests, on
// loopback: discovery, a key set (RSA), an authorization endpoint that signs
// in whoever the test says at once and sends the browser back with a code,
// and a token endpoint that checks the code, PKCE verifier, redirect URL and
// client secret and answers with an ID token whose claims the test may
// change, or sign with a foreign key.
//
// It is a test fixture: it never checks a password, and must never be used
// outside tests.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Options configures New. Zero values mean the defaults.
type Options struct {
	// ClientID and ClientSecret are the one client the provider knows
	// (default "dspool" and "s3cret").
	ClientID, ClientSecret string
}

// Provider is a running provider.
type Provider struct {
	// URL is its issuer URL.
	URL                    string
	ClientID, ClientSecret string

	key, foreign *rsa.PrivateKey
	srv          *httptest.Server

	mu       sync.Mutex
	identity map[string]any
	tamper   func(claims map[string]any)
	badSig   bool
	codes    map[string]grant
	// Authorized counts the sign-ins it answered at /authorize.
	authorized int
}

type grant struct {
	nonce, challenge, redirect string
}

// New starts a provider, stopped at the end of the test. It signs in
// "ada" (email ada@example.com, verified) until SetIdentity says otherwise.
func New(t testing.TB, opts Options) *Provider {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = "dspool"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "s3cret"
	}
	p := &Provider{ClientID: opts.ClientID, ClientSecret: opts.ClientSecret, codes: map[string]grant{},
		key: newKey(t), foreign: newKey(t)}
	p.identity = map[string]any{"sub": "ada-1", "email": "ada@example.com", "email_verified": true, "preferred_username": "ada"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

func newKey(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// SetIdentity makes the provider sign in someone else: their claims (sub,
// email, email_verified, preferred_username...).
func (p *Provider) SetIdentity(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.identity = maps.Clone(claims)
}

// Tamper changes the claims of every ID token issued from now on (iss, aud,
// exp, nonce...), after the provider has set them; nil stops it.
func (p *Provider) Tamper(f func(claims map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = f
}

// SignWithForeignKey makes the provider sign ID tokens with a key that is
// not in its key set.
func (p *Provider) SignWithForeignKey(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.badSig = on
}

// Close stops the provider before the end of the test: discovery then fails.
func (p *Provider) Close() { p.srv.Close() }

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.URL,
		"authorization_endpoint":                p.URL + "/authorize",
		"token_endpoint":                        p.URL + "/token",
		"jwks_uri":                              p.URL + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig"},
	}})
}

// authorize signs in the current identity and sends the browser back.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("client_id") != p.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE (S256) is required", http.StatusBadRequest)
		return
	case q.Get("redirect_uri") == "":
		http.Error(w, "redirect_uri is required", http.StatusBadRequest)
		return
	}
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	code := rand.Text()
	p.mu.Lock()
	p.codes[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	p.authorized++
	p.mu.Unlock()
	v := back.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// Authorized returns how many sign-ins /authorize has answered.
func (p *Provider) Authorized() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.authorized
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.ClientID || secret != p.ClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, "unsupported_grant_type", "")
		return
	}
	p.mu.Lock()
	g, ok := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code"))
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok:
		oauthError(w, "invalid_grant", "unknown or used code")
		return
	case g.redirect != r.PostForm.Get("redirect_uri"):
		oauthError(w, "invalid_grant", "redirect_uri differs from the authorization request's")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		oauthError(w, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	}
	raw, err := p.idToken(g.nonce)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": rand.Text(), "token_type": "Bearer", "expires_in": 300, "id_token": raw})
}

// idToken signs the current identity's claims for a sign-in with nonce.
func (p *Provider) idToken(nonce string) (string, error) {
	p.mu.Lock()
	claims := maps.Clone(p.identity)
	tamper, key := p.tamper, p.key
	if p.badSig {
		key = p.foreign
	}
	p.mu.Unlock()
	now := time.Now()
	claims["iss"] = p.URL
	claims["aud"] = p.ClientID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(5 * time.Minute).Unix()
	claims["nonce"] = nonce
	if tamper != nil {
		tamper(claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func oauthError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
