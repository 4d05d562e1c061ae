package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/roomversion"
	"github.com/mlsmode/mlsmode/storage/types"
)

const roomsSchema = `
CREATE TABLE IF NOT EXISTS mlsmode_rooms (
	room_id TEXT PRIMARY KEY,
	room_version TEXT NOT NULL,
	algorithm TEXT NOT NULL
);`

const (
	insertRoomSQL = `INSERT INTO mlsmode_rooms (room_id, room_version, algorithm) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO NOTHING`
	selectRoomSQL = `SELECT room_version, algorithm FROM mlsmode_rooms WHERE room_id = $1`
)

type roomsTable struct {
	insertStmt, selectRoomStmt *sql.Stmt
}

func prepareRoomsTable(ctx context.Context, db *sql.DB) (*roomsTable, error) {
	t := &roomsTable{}
	return t, prepareAll(ctx, db, "mlsmode_rooms", map[**sql.Stmt]string{
		&t.insertStmt: insertRoomSQL, &t.selectRoomStmt: selectRoomSQL,
	})
}

// insertRoom stores a room unless present; it fails with ErrConflict if
// present with another version or algorithm.
func (t *roomsTable) insertRoom(ctx context.Context, tx *sql.Tx, r types.Room) error {
	res, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, r.RoomID, string(r.Version), r.Algorithm)
	if err != nil {
		return fmt.Errorf("inserting room %s: %w", r.RoomID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return nil
	}
	got, err := t.selectRoom(ctx, tx, r.RoomID)
	if err != nil {
		return err
	}
	if got != r {
		return fmt.Errorf("room %s stored as %s/%s: %w", r.RoomID, got.Version, got.Algorithm, types.ErrConflict)
	}
	return nil
}

// ensureRoom stores a room unless present, whatever is stored.
func (t *roomsTable) ensureRoom(ctx context.Context, tx *sql.Tx, r types.Room) error {
	if _, err := stmt(ctx, tx, t.insertStmt).ExecContext(ctx, r.RoomID, string(r.Version), r.Algorithm); err != nil {
		return fmt.Errorf("inserting room %s: %w", r.RoomID, err)
	}
	return nil
}

func (t *roomsTable) selectRoom(ctx context.Context, tx *sql.Tx, roomID string) (types.Room, error) {
	r := types.Room{RoomID: roomID}
	var v string
	err := stmt(ctx, tx, t.selectRoomStmt).QueryRowContext(ctx, roomID).Scan(&v, &r.Algorithm)
	if errors.Is(err, sql.ErrNoRows) {
		return types.Room{}, fmt.Errorf("room %s: %w", roomID, types.ErrNotFound)
	}
	if err != nil {
		return types.Room{}, fmt.Errorf("selecting room %s: %w", roomID, err)
	}
	r.Version = roomversion.Version(v)
	return r, nil
}
