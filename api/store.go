package api

import (
	"context"
	"fmt"
	"io"
)

// Backup writes a consistent copy of the store, a SQLite file, to w (an
// admin's call) and returns its size. A copy cut short is an error.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.request(ctx, "GET", "/api/v1/backup", nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("receive the store's copy: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("receive the store's copy: cut short at %d of %d bytes", n, resp.ContentLength)
	}
	return n, nil
}
