package pgstore

import (
	"context"
	"testing"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/storetest"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

func openTest(t *testing.T, opts store.Options) (store.Store, func(store.Options) store.Store) {
	t.Helper()
	url := testenv.PostgresSchema(t)
	open := func(o store.Options) store.Store {
		s, err := Open(context.Background(), url, o)
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

func TestEventsCarryTransactionID(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t, store.Options{})
	ctx := context.Background()
	require.NoError(t, s.Migrate(ctx))
	var first, second store.Event
	require.NoError(t, s.InTx(ctx, func(tx store.Tx) error {
		var err error
		if first, _, err = tx.AppendEvent(ctx, store.EventInput{Type: "A", Audience: store.AudienceAdmin}); err != nil {
			return err
		}
		second, _, err = tx.AppendEvent(ctx, store.EventInput{Type: "B", Audience: store.AudienceAdmin})
		return err
	}))
	require.NotZero(t, first.TxID)
	require.Equal(t, first.TxID, second.TxID, "one transaction, one id")
	got, err := s.EventsAfter(ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, first.TxID, got[0].TxID)
}
