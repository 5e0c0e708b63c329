package api

import (
	"context"
	"net/url"

	"github.com/dspool/dspool"
)

// Queue returns the queued work of every user, of one pool when pool is
// not empty, in the order the scheduler takes it.
func (c *Client) Queue(ctx context.Context, pool string) (*dspool.Queue, error) {
	q := url.Values{}
	if pool != "" {
		q.Set("pool", pool)
	}
	var out dspool.Queue
	return &out, c.Do(ctx, "GET", "/api/v1/queue?"+q.Encode(), nil, &out)
}

// Share returns each team's and user's fair share and decayed usage.
func (c *Client) Share(ctx context.Context) (*dspool.ShareReport, error) {
	var out dspool.ShareReport
	return &out, c.Do(ctx, "GET", "/api/v1/share", nil, &out)
}
