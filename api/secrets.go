package api

import (
	"context"
	"net/url"

	"github.com/dspool/dspool"
)

// SecretSet is the body of PUT /api/v1/secrets/{name}: the value (base64
// in JSON), and for a team's secret the team. It replaces the value and the
// session settings of an existing secret.
type SecretSet struct {
	Value       []byte `json:"value"`
	Team        string `json:"team,omitempty"`
	SessionEnv  string `json:"session_env,omitempty"`
	SessionFile bool   `json:"session_file,omitempty"`
}

// SecretList is the answer of GET /api/v1/secrets: names and dates, never
// values.
type SecretList struct {
	Secrets []*dspool.Secret `json:"secrets"`
}

// KeyRotation is the answer of POST /api/v1/secrets/rotate-key.
type KeyRotation struct {
	KeyID   string `json:"key_id"`
	Secrets int    `json:"secrets"`
}

// SecretValue is one secret on its way to an agent for an attempt or a
// session: its value goes into the environment variable Env, or into the
// file File of the work's private secrets directory.
type SecretValue struct {
	Secret string `json:"secret"` // the reference the work used: NAME or TEAM/NAME
	Env    string `json:"env,omitempty"`
	File   string `json:"file,omitempty"`
	Value  []byte `json:"value"`
}

// SetSecret creates or replaces a secret of the caller, or of team.
func (c *Client) SetSecret(ctx context.Context, name string, req SecretSet) (*dspool.Secret, error) {
	var s dspool.Secret
	return &s, c.Do(ctx, "PUT", "/api/v1/secrets/"+url.PathEscape(name), req, &s)
}

// Secrets lists the secrets of the caller and of their teams.
func (c *Client) Secrets(ctx context.Context) ([]*dspool.Secret, error) {
	var l SecretList
	return l.Secrets, c.Do(ctx, "GET", "/api/v1/secrets", nil, &l)
}

// DeleteSecret removes a secret of the caller, or of team.
func (c *Client) DeleteSecret(ctx context.Context, name, team string) error {
	p := "/api/v1/secrets/" + url.PathEscape(name)
	if team != "" {
		p += "?team=" + url.QueryEscape(team)
	}
	return c.Do(ctx, "DELETE", p, nil, nil)
}

// RotateSecretsKey re-encrypts every secret under a new key (admin).
func (c *Client) RotateSecretsKey(ctx context.Context) (*KeyRotation, error) {
	var r KeyRotation
	return &r, c.Do(ctx, "POST", "/api/v1/secrets/rotate-key", nil, &r)
}
