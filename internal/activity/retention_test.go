package activity

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestRetentionKeepsRunningAfterStoreError locks the database from another
// connection during one pass: the pass fails, the loop neither dies nor
// beats, and the next pass (after the lock is gone) prunes and beats.
func TestRetentionKeepsRunningAfterStoreError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := clock.NewFake(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := sqlitestore.Open(ctx, t.TempDir(), store.Options{Now: c.Now})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Migrate(ctx))
	old := store.Activity{ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: uuid.NewString(), ActivityType: "agent_log", Source: "agent", CreatedAt: c.Now()}
	require.NoError(t, st.InTx(ctx, func(tx store.Tx) error { return tx.InsertActivity(ctx, old) }))
	c.Advance(48 * time.Hour)

	other, err := sql.Open("sqlite", "file:"+st.Path()+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "BEGIN EXCLUSIVE")
	require.NoError(t, err)

	live := supervise.NewRegistry(c)
	r := NewRetention(st, c, slog.New(slog.NewTextHandler(io.Discard, nil)), 24*time.Hour)
	done := make(chan error, 1)
	h := live.Declare("retention", RetentionInterval)
	go func() { done <- r.Run(ctx, h) }()

	// First pass hits the lock (the busy timeout runs on the real clock),
	// fails, and the loop parks on its next interval instead of returning.
	require.True(t, c.WaitForTimers(1, 30*time.Second))
	select {
	case err := <-done:
		t.Fatalf("retention loop returned: %v", err)
	default:
	}
	require.Nil(t, live.Snapshot()["retention"].LastTickAt, "a failed pass does not beat")

	_, err = conn.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	c.Advance(RetentionInterval)
	require.Eventually(t, func() bool { return live.Snapshot()["retention"].LastTickAt != nil }, 30*time.Second, 10*time.Millisecond)
	rows, err := st.ListActivity(ctx, store.ActivityFilter{WorkspaceID: old.WorkspaceID})
	require.NoError(t, err)
	require.Empty(t, rows, "pruned once the store was back")
	cancel()
	require.NoError(t, <-done)
}
