package api

import (
	"context"
	"net/url"

	"github.com/dspool/dspool"
)

// Schedules are addressed by a reference: one of the caller's schedules
// by name, or any schedule the caller may see by id (an admin's way to
// another user's).

// CreateSchedule creates a schedule of the caller's.
func (c *Client) CreateSchedule(ctx context.Context, spec *dspool.ScheduleSpec) (*dspool.Schedule, error) {
	var s dspool.Schedule
	return &s, c.Do(ctx, "POST", "/api/v1/schedules", spec, &s)
}

// Schedules lists the caller's schedules, or everyone's (allUsers, an
// admin).
func (c *Client) Schedules(ctx context.Context, allUsers bool) ([]*dspool.Schedule, error) {
	path := "/api/v1/schedules"
	if allUsers {
		path += "?all=true"
	}
	var l ScheduleList
	return l.Schedules, c.Do(ctx, "GET", path, nil, &l)
}

// Schedule returns a schedule with its latest runs.
func (c *Client) Schedule(ctx context.Context, ref string) (*ScheduleDetail, error) {
	var s ScheduleDetail
	return &s, c.Do(ctx, "GET", "/api/v1/schedules/"+url.PathEscape(ref), nil, &s)
}

// PauseSchedule stops a schedule firing until it is resumed.
func (c *Client) PauseSchedule(ctx context.Context, ref string) (*dspool.Schedule, error) {
	var s dspool.Schedule
	return &s, c.Do(ctx, "POST", "/api/v1/schedules/"+url.PathEscape(ref)+"/pause", nil, &s)
}

// ResumeSchedule lets a paused schedule fire again, from its next slot.
func (c *Client) ResumeSchedule(ctx context.Context, ref string) (*dspool.Schedule, error) {
	var s dspool.Schedule
	return &s, c.Do(ctx, "POST", "/api/v1/schedules/"+url.PathEscape(ref)+"/resume", nil, &s)
}

// DeleteSchedule deletes a schedule; the jobs it submitted stay.
func (c *Client) DeleteSchedule(ctx context.Context, ref string) (*dspool.Schedule, error) {
	var s dspool.Schedule
	return &s, c.Do(ctx, "DELETE", "/api/v1/schedules/"+url.PathEscape(ref), nil, &s)
}
