package sqlitestore

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

func openTest(t *testing.T, opts store.Options) (store.Store, func(store.Options) store.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	open := func(o store.Options) store.Store {
		s, err := OpenFile(context.Background(), path, o)
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(opts), open
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, openTest)
}

func TestPragmasApplied(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), t.TempDir(), store.Options{})
	require.NoError(t, err)
	defer s.Close()
	p, err := s.Pragmas(context.Background())
	require.NoError(t, err)
	require.Equal(t, "wal", p["journal_mode"])
	require.Equal(t, "5000", p["busy_timeout"])
	require.Equal(t, "1", p["synchronous"], "NORMAL")
	require.Equal(t, "1", p["foreign_keys"])
	require.Equal(t, "1", p["query_only"], "the read pool cannot write")
}

func TestInstantsStoredAsMilliseconds(t *testing.T) {
	t.Parallel()
	at := time.Date(2027, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	s, err := Open(context.Background(), t.TempDir(), store.Options{Now: func() time.Time { return at }})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(context.Background()))
	require.NoError(t, s.InTx(context.Background(), func(tx store.Tx) error {
		_, _, err := tx.AppendEvent(context.Background(), store.EventInput{Type: "T", Audience: store.AudienceAdmin})
		return err
	}))
	var ms int64
	require.NoError(t, s.read.QueryRow(`SELECT created_at FROM events`).Scan(&ms))
	require.Equal(t, at.UnixMilli(), ms)
}

// TestReadyWhenFileLockedByAnotherProcess holds SQLite's write lock from a
// separate connection (as another process would) and checks that Ready reports
// the store unavailable, then recovers when the lock is released.
func TestReadyWhenFileLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(context.Background(), dir, store.Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(context.Background()))
	require.NoError(t, s.Ready(context.Background()))

	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE")
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = s.Ready(ctx)
	require.Error(t, err)

	_, err = conn.ExecContext(context.Background(), "COMMIT")
	require.NoError(t, err)
	require.NoError(t, s.Ready(context.Background()))
}
