package api

import (
	"context"
	"net/url"
	"strconv"
)

// Running a fleet: draining and removing nodes, deleting pools, and the
// lifetime of join tokens. Every call here needs an admin.

// NewJoinToken creates a join token for pool as r asks (its expiry).
func (c *Client) NewJoinToken(ctx context.Context, pool string, r JoinTokenCreate) (*JoinToken, error) {
	var out JoinToken
	return &out, c.Do(ctx, "POST", "/api/v1/pools/"+url.PathEscape(pool)+"/join-tokens", &r, &out)
}

// JoinTokens lists the join tokens of pool: ids, times, never secrets.
func (c *Client) JoinTokens(ctx context.Context, pool string) (*JoinTokenList, error) {
	var out JoinTokenList
	return &out, c.Do(ctx, "GET", "/api/v1/pools/"+url.PathEscape(pool)+"/join-tokens", nil, &out)
}

// RevokeJoinToken revokes join token id of pool, or every one of pool's
// when id is 0, and returns those it revoked.
func (c *Client) RevokeJoinToken(ctx context.Context, pool string, id int64) (*JoinTokenList, error) {
	path := "/api/v1/pools/" + url.PathEscape(pool) + "/join-tokens/revoke"
	if id != 0 {
		path = "/api/v1/pools/" + url.PathEscape(pool) + "/join-tokens/" + strconv.FormatInt(id, 10) + "/revoke"
	}
	var out JoinTokenList
	return &out, c.Do(ctx, "POST", path, nil, &out)
}

// DrainNode stops placing work on a node (by name or id); what runs there
// keeps running.
func (c *Client) DrainNode(ctx context.Context, node string) (*NodeChange, error) {
	var out NodeChange
	return &out, c.Do(ctx, "POST", "/api/v1/nodes/"+url.PathEscape(node)+"/drain", nil, &out)
}

// UndrainNode lets a drained node take work again.
func (c *Client) UndrainNode(ctx context.Context, node string) (*NodeChange, error) {
	var out NodeChange
	return &out, c.Do(ctx, "POST", "/api/v1/nodes/"+url.PathEscape(node)+"/undrain", nil, &out)
}

// RemoveNode removes a node from its pool. A node with work is refused
// unless force, which ends its jobs' attempts (retried when they allow)
// and its sessions.
func (c *Client) RemoveNode(ctx context.Context, node string, force bool) (*NodeChange, error) {
	var out NodeChange
	return &out, c.Do(ctx, "DELETE", "/api/v1/nodes/"+url.PathEscape(node)+"?force="+strconv.FormatBool(force), nil, &out)
}

// DeletePool deletes a pool. A pool with nodes or work is refused unless
// force, which removes its nodes and cancels its jobs and sessions.
func (c *Client) DeletePool(ctx context.Context, pool string, force bool) (*PoolDeletion, error) {
	var out PoolDeletion
	return &out, c.Do(ctx, "DELETE", "/api/v1/pools/"+url.PathEscape(pool)+"?force="+strconv.FormatBool(force), nil, &out)
}
