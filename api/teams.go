package api

import (
	"context"
	"net/url"

	"github.com/dspool/dspool"
)

// TeamCreate is the body of POST /api/v1/teams.
type TeamCreate struct {
	Name string `json:"name"`
}

// TeamMemberSet is the body of PUT /api/v1/teams/{name}/members/{user}.
type TeamMemberSet struct {
	Maintainer bool `json:"maintainer,omitempty"`
}

// UserLimits is a user's own limits (PUT and GET
// /api/v1/users/{name}/limits) and, when read, the teams they are in.
type UserLimits struct {
	User   string        `json:"user,omitempty"`
	Limits dspool.Limits `json:"limits"`
	Teams  []string      `json:"teams,omitempty"`
}

// CreateTeam creates a team (admin).
func (c *Client) CreateTeam(ctx context.Context, name string) (*dspool.Team, error) {
	var t dspool.Team
	err := c.Do(ctx, "POST", "/api/v1/teams", TeamCreate{Name: name}, &t)
	return &t, err
}

// Teams lists every team with its members and limits.
func (c *Client) Teams(ctx context.Context) ([]*dspool.Team, error) {
	var ts []*dspool.Team
	err := c.Do(ctx, "GET", "/api/v1/teams", nil, &ts)
	return ts, err
}

// Team returns one team.
func (c *Client) Team(ctx context.Context, name string) (*dspool.Team, error) {
	var t dspool.Team
	err := c.Do(ctx, "GET", "/api/v1/teams/"+url.PathEscape(name), nil, &t)
	return &t, err
}

// DeleteTeam deletes a team (admin).
func (c *Client) DeleteTeam(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/api/v1/teams/"+url.PathEscape(name), nil, nil)
}

// AddTeamMember adds user to team, or changes whether they maintain it
// (admin, or a maintainer of the team for members who do not maintain it).
func (c *Client) AddTeamMember(ctx context.Context, team, user string, maintainer bool) (*dspool.Team, error) {
	var t dspool.Team
	err := c.Do(ctx, "PUT", "/api/v1/teams/"+url.PathEscape(team)+"/members/"+url.PathEscape(user), TeamMemberSet{Maintainer: maintainer}, &t)
	return &t, err
}

// RemoveTeamMember removes user from team.
func (c *Client) RemoveTeamMember(ctx context.Context, team, user string) (*dspool.Team, error) {
	var t dspool.Team
	err := c.Do(ctx, "DELETE", "/api/v1/teams/"+url.PathEscape(team)+"/members/"+url.PathEscape(user), nil, &t)
	return &t, err
}

// SetTeamLimits replaces a team's limits (admin).
func (c *Client) SetTeamLimits(ctx context.Context, team string, l dspool.Limits) (*dspool.Team, error) {
	var t dspool.Team
	err := c.Do(ctx, "PUT", "/api/v1/teams/"+url.PathEscape(team)+"/limits", l, &t)
	return &t, err
}

// UserLimits returns a user's own limits and teams (yours, or as an admin
// anyone's).
func (c *Client) UserLimits(ctx context.Context, user string) (*UserLimits, error) {
	var l UserLimits
	err := c.Do(ctx, "GET", "/api/v1/users/"+url.PathEscape(user)+"/limits", nil, &l)
	return &l, err
}

// SetUserLimits replaces a user's own limits (admin).
func (c *Client) SetUserLimits(ctx context.Context, user string, l dspool.Limits) (*UserLimits, error) {
	var out UserLimits
	err := c.Do(ctx, "PUT", "/api/v1/users/"+url.PathEscape(user)+"/limits", l, &out)
	return &out, err
}
