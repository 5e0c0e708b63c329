package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// Report is what an agent says of one attempt: that it started, and/or how
// it ended.
type Report struct {
	Job       int64
	Attempt   int
	StartedAt *time.Time
	Result    *dspool.AttemptResult
	At        time.Time // when it ended
}

// ApplyReports records the reports of one heartbeat from node in one
// transaction (one fsync for all of them). Stale reports are skipped; the
// ids of the jobs that changed are returned.
func (db *DB) ApplyReports(ctx context.Context, node string, rs []Report) ([]int64, error) {
	var changed []int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		changed = changed[:0]
		for _, r := range rs {
			j, err := fencedJob(tx, r.Job, r.Attempt, node)
			if dspool.ErrorCode(err) == dspool.EConflict || dspool.ErrorCode(err) == dspool.ENotFound {
				continue
			}
			if err != nil {
				return err
			}
			if r.StartedAt != nil {
				if err := markStarted(tx, j, *r.StartedAt); err != nil {
					return err
				}
			}
			if r.Result != nil {
				if err := finish(tx, j, *r.Result, r.At); err != nil {
					return err
				}
			}
			changed = append(changed, r.Job)
		}
		return nil
	})
	return changed, err
}

// FinishAttempt records how attempt of job on node ended and moves the job
// on (succeeded, failed, cancelled or queued again for a retry). A stale
// report is refused with an EConflict error and changes nothing.
func (db *DB) FinishAttempt(ctx context.Context, id int64, attempt int, node string, r dspool.AttemptResult, at time.Time) (*dspool.Job, error) {
	return db.fenced(ctx, id, attempt, node, func(tx *sql.Tx, j *dspool.Job) error {
		return finish(tx, j, r, at)
	})
}

func finish(tx *sql.Tx, j *dspool.Job, r dspool.AttemptResult, at time.Time) error {
	attempt := j.Attempt
	if _, err := tx.Exec(`UPDATE attempts SET finished_at = ?, exit_code = ?, reason = ?, message = ?,
		started_at = COALESCE(started_at, ?) WHERE job_id = ? AND number = ?`,
		unixNano(at), nullInt(r.ExitCode), string(reasonOf(r)), r.Message, nullTime(j.StartedAt), j.ID, attempt); err != nil {
		return fmt.Errorf("finish attempt: %w", err)
	}
	j.Finish(r, at)
	return saveJob(tx, j)
}

func reasonOf(r dspool.AttemptResult) dspool.Reason {
	if r.Reason == "" && !r.Succeeded() {
		return dspool.ReasonExit
	}
	return r.Reason
}

func saveJob(tx *sql.Tx, j *dspool.Job) error {
	cancel := 0
	if j.CancelRequested {
		cancel = 1
	}
	_, err := tx.Exec(`UPDATE jobs SET state = ?, reason = ?, exit_code = ?, message = ?, attempt = ?, node = ?,
		gpu_indices = ?, cancel_requested = ?, started_at = ?, finished_at = ?, preemptions = ?, preempt_requested = ? WHERE id = ?`,
		string(j.State), string(j.Reason), nullInt(j.ExitCode), j.Message, j.Attempt, j.Node,
		formatInts(j.GPUIndices), cancel, nullTime(j.StartedAt), nullTime(j.FinishedAt), j.Preemptions, boolInt(j.PreemptRequested), j.ID)
	if err != nil {
		return fmt.Errorf("save job %d: %w", j.ID, err)
	}
	return nil
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// CancelJob cancels job id: at once when queued, by request when running
// (the agent confirms). Cancelling a finished job is an EConflict error.
func (db *DB) CancelJob(ctx context.Context, id int64) (*dspool.Job, error) {
	var j *dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if j, err = getJob(tx, id); err != nil {
			return err
		}
		if err := j.Cancel(db.now()); err != nil {
			return err
		}
		return saveJob(tx, j)
	})
	return j, err
}

// PreemptJob marks attempt of running job id as being evicted for a job
// of a higher score: when the attempt ends, however it ends, the job waits
// in the queue again (dspool.Job.Finish). A stale attempt, or a job that
// is not preemptible or is already stopping, is an EConflict error.
func (db *DB) PreemptJob(ctx context.Context, id int64, attempt int) (*dspool.Job, error) {
	var j *dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if j, err = getJob(tx, id); err != nil {
			return err
		}
		if j.State == dspool.JobRunning && j.Attempt != attempt {
			return dspool.Errorf(dspool.EConflict, "job %d runs attempt %d, not %d", id, j.Attempt, attempt)
		}
		if err := j.Preempt(); err != nil {
			return err
		}
		return saveJob(tx, j)
	})
	return j, err
}

// LoseNode ends every running attempt on node with reason node_lost (retried
// when retries are left) and marks the node lost. It returns the jobs changed.
func (db *DB) LoseNode(ctx context.Context, node, message string) ([]*dspool.Job, error) {
	return db.endNode(ctx, node, nodeExit{state: dspool.NodeLost, message: message})
}

// LeaveNode marks node gone without removing it: its agent stopped on
// purpose, or it stayed lost too long. Its credential still works, so it
// comes back when its agent connects again. Attempts still running there
// end with reason node_lost (retried when their job allows).
func (db *DB) LeaveNode(ctx context.Context, node, message string) ([]*dspool.Job, error) {
	return db.endNode(ctx, node, nodeExit{state: dspool.NodeGone, message: message})
}

// EndNodeAttempts ends every attempt running on node with reason and
// message (retried when their job allows), leaving the node as it is.
func (db *DB) EndNodeAttempts(ctx context.Context, node string, reason dspool.Reason, message string) ([]*dspool.Job, error) {
	var changed []*dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		changed, err = endAttempts(tx, node, dspool.AttemptResult{Reason: reason, Message: message}, db.now())
		return err
	})
	return changed, err
}

// nodeExit is where endNode moves a node.
type nodeExit struct {
	state   dspool.NodeState // lost or gone
	message string
	removed bool // gone for good: its credential is refused from now on
}

// endNode moves a node to e.state and ends its running attempts with
// reason node_lost.
func (db *DB) endNode(ctx context.Context, node string, e nodeExit) ([]*dspool.Job, error) {
	now := db.now()
	var changed []*dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		from := `state NOT IN ('gone', 'failed')` // a failed node is not lost: it told us why
		if e.state == dspool.NodeGone {
			from = `state != 'gone'`
		}
		var goneAt, removedAt any // when it goes: usage counts a node's time until then
		if e.state == dspool.NodeGone {
			goneAt = unixNano(now)
		}
		if e.removed {
			removedAt = unixNano(now)
			// A node that had left already is removed all the same.
			if _, err := tx.Exec(`UPDATE nodes SET removed_at = COALESCE(removed_at, ?) WHERE id = ?`, removedAt, node); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE nodes SET state = ?, message = ?, gone_at = COALESCE(?, gone_at) WHERE id = ? AND `+from,
			string(e.state), e.message, goneAt, node); err != nil {
			return err
		}
		var err error
		changed, err = endAttempts(tx, node, dspool.AttemptResult{Reason: dspool.ReasonNodeLost, Message: e.message}, now)
		return err
	})
	return changed, err
}

// endAttempts ends every attempt running on node with r.
func endAttempts(tx *sql.Tx, node string, r dspool.AttemptResult, now time.Time) ([]*dspool.Job, error) {
	rows, err := tx.Query(`SELECT id FROM jobs WHERE state = 'running' AND node = ?`, node)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	var changed []*dspool.Job
	for _, id := range ids {
		j, err := getJob(tx, id)
		if err != nil {
			return nil, err
		}
		if err := finish(tx, j, r, now); err != nil {
			return nil, err
		}
		changed = append(changed, j)
	}
	return changed, nil
}
