package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/storage/types"
)

// The pending-commit queue (SPEC-NOTES §6).
const pendingCommitsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_pending_commits (
	event_id TEXT PRIMARY KEY,
	room_id TEXT NOT NULL,
	commit_id TEXT NOT NULL,
	received_ts BIGINT NOT NULL,
	status TEXT NOT NULL DEFAULT 'waiting',
	applied_commit_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS mlsmode_pending_commits_room_idx
	ON mlsmode_pending_commits (room_id, status, received_ts, event_id);`

const (
	insertPendingCommitSQL = `INSERT INTO mlsmode_pending_commits (event_id, room_id, commit_id, received_ts, status)
		VALUES ($1, $2, $3, $4, 'waiting') ON CONFLICT (event_id) DO NOTHING`
	selectPendingCommitSQL = `SELECT room_id, commit_id, received_ts, status, applied_commit_id
		FROM mlsmode_pending_commits WHERE event_id = $1`
	// Locks the row until the claiming transaction ends.
	lockPendingCommitSQL        = `SELECT room_id, commit_id, status FROM mlsmode_pending_commits WHERE event_id = $1 FOR UPDATE`
	selectRoomPendingCommitsSQL = `SELECT event_id, commit_id, received_ts, applied_commit_id
		FROM mlsmode_pending_commits WHERE room_id = $1 AND status = $2 ORDER BY received_ts, event_id`
	selectRoomsWithPendingSQL = `SELECT DISTINCT room_id FROM mlsmode_pending_commits WHERE status = $1 ORDER BY room_id`
	// Moves a waiting pending commit on; the WHERE makes it happen once.
	updatePendingStatusSQL = `UPDATE mlsmode_pending_commits SET status = $2, applied_commit_id = $3
		WHERE event_id = $1 AND status = 'waiting'`
)

type pendingCommitsTable struct {
	insertStmt, selectOneStmt, lockStmt, selectRoomStmt, updateStatusStmt, selectRoomsStmt *sql.Stmt
}

func preparePendingCommitsTable(ctx context.Context, db *sql.DB) (*pendingCommitsTable, error) {
	t := &pendingCommitsTable{}
	return t, prepareAll(ctx, db, "mlsmode_pending_commits", map[**sql.Stmt]string{
		&t.insertStmt: insertPendingCommitSQL, &t.selectOneStmt: selectPendingCommitSQL, &t.lockStmt: lockPendingCommitSQL,
		&t.selectRoomStmt: selectRoomPendingCommitsSQL, &t.updateStatusStmt: updatePendingStatusSQL,
		&t.selectRoomsStmt: selectRoomsWithPendingSQL,
	})
}

func (t *pendingCommitsTable) insertPending(ctx context.Context, tx *sql.Tx, pc types.PendingCommit) (bool, error) {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, pc.EventID, pc.RoomID, pc.CommitID, pc.ReceivedTS)
	if err != nil {
		return false, fmt.Errorf("inserting pending commit %s: %w", pc.EventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inserting pending commit %s: %w", pc.EventID, err)
	}
	return n == 1, nil
}

func (t *pendingCommitsTable) selectPending(ctx context.Context, tx *sql.Tx, id string) (types.PendingCommit, error) {
	pc := types.PendingCommit{EventID: id}
	var status string
	err := stmt(ctx, tx, t.selectOneStmt).QueryRowContext(ctx, id).Scan(&pc.RoomID, &pc.CommitID, &pc.ReceivedTS, &status, &pc.AppliedCommitID)
	if errors.Is(err, sql.ErrNoRows) {
		return pc, fmt.Errorf("pending commit %s: %w", id, types.ErrNotFound)
	}
	if err != nil {
		return pc, fmt.Errorf("selecting pending commit %s: %w", id, err)
	}
	pc.Status = types.PendingStatus(status)
	return pc, nil
}

// lockPending locks a pending commit's row for the rest of tx.
func (t *pendingCommitsTable) lockPending(ctx context.Context, tx *sql.Tx, id string) (roomID, commitID string, status types.PendingStatus, err error) {
	var s string
	err = stmt(ctx, tx, t.lockStmt).QueryRowContext(ctx, id).Scan(&roomID, &commitID, &s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", "", fmt.Errorf("pending commit %s: %w", id, types.ErrNotFound)
	}
	if err != nil {
		return "", "", "", fmt.Errorf("locking pending commit %s: %w", id, err)
	}
	return roomID, commitID, types.PendingStatus(s), nil
}

func (t *pendingCommitsTable) selectRooms(ctx context.Context, status types.PendingStatus) ([]string, error) {
	rows, err := t.selectRoomsStmt.QueryContext(ctx, string(status))
	if err != nil {
		return nil, fmt.Errorf("selecting rooms with %s pending commits: %w", status, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scanning rooms with pending commits: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting rooms with %s pending commits: %w", status, err)
	}
	return out, nil
}

func (t *pendingCommitsTable) selectRoomPending(ctx context.Context, tx *sql.Tx, roomID string, status types.PendingStatus) ([]types.PendingCommit, error) {
	rows, err := stmt(ctx, tx, t.selectRoomStmt).QueryContext(ctx, roomID, string(status))
	if err != nil {
		return nil, fmt.Errorf("selecting pending commits of %s: %w", roomID, err)
	}
	defer rows.Close()
	out := []types.PendingCommit{}
	for rows.Next() {
		pc := types.PendingCommit{RoomID: roomID, Status: status}
		if err := rows.Scan(&pc.EventID, &pc.CommitID, &pc.ReceivedTS, &pc.AppliedCommitID); err != nil {
			return nil, fmt.Errorf("scanning pending commits: %w", err)
		}
		out = append(out, pc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting pending commits of %s: %w", roomID, err)
	}
	return out, nil
}

// updateStatus moves a waiting pending commit to status; it reports false
// if it was not waiting.
func (t *pendingCommitsTable) updateStatus(ctx context.Context, tx *sql.Tx, id string, status types.PendingStatus, applied string) (bool, error) {
	res, err := stmt(ctx, tx, t.updateStatusStmt).ExecContext(ctx, id, string(status), applied)
	if err != nil {
		return false, fmt.Errorf("setting pending commit %s %s: %w", id, status, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("setting pending commit %s %s: %w", id, status, err)
	}
	return n == 1, nil
}
