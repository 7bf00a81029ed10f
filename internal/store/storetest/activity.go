package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

func runActivity(t *testing.T, open Opener) {
	t.Run("InsertActivitiesMatchesOneByOne", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		var want []store.Activity
		for i := range 3 {
			a := store.Activity{
				ID: newID(), WorkspaceID: ws.ID, ActivityType: "a2a_receive", Source: "canvas", SourceID: "admin",
				TargetID: ws.ID, Method: "message/send", Summary: fmt.Sprint("s", i), RequestBody: "{}", ResponseBody: "r",
				RequestTruncated: i == 1, ResponseTruncated: i == 2, Status: "ok", ErrorDetail: "e", DurationMS: int64(i), CreatedAt: now,
			}
			if i == 2 {
				a.Attachments = json.RawMessage(`[{"uri":"https://x/y","name":"y"}]`)
			}
			want = append(want, a)
		}
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertActivities(b.ctx, want) }))
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertActivities(b.ctx, nil) }))
		got, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: ws.ID})
		require.NoError(t, err)
		require.Len(t, got, 3)
		for i, g := range got {
			w := want[2-i] // newest (largest UUIDv7) first
			require.JSONEq(t, orEmpty(w.Attachments), orEmpty(g.Attachments))
			g.Attachments, w.Attachments = nil, nil
			require.Equal(t, w, g)
		}
	})

	t.Run("ActivityRoundTripAndPaging", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		var ids []string
		for i := 0; i < 5; i++ {
			a := store.Activity{
				ID: newID(), WorkspaceID: ws.ID, ActivityType: []string{"agent_log", "error"}[i%2], Source: "agent",
				SourceID: ws.ID, Summary: fmt.Sprintf("s%d", i), RequestBody: "req", ResponseBody: "resp",
				ResponseTruncated: i == 4, Status: "ok", DurationMS: int64(i), CreatedAt: b.clock.Now(),
			}
			if i == 3 {
				a.Attachments = json.RawMessage(`[{"uri":"https://x/y","name":"y"}]`)
			}
			require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertActivity(b.ctx, a) }))
			ids = append(ids, a.ID)
			b.clock.Advance(time.Millisecond)
		}
		got, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: ws.ID, Limit: 2})
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, ids[4], got[0].ID, "newest first")
		require.True(t, got[0].ResponseTruncated)
		require.JSONEq(t, `[{"uri":"https://x/y","name":"y"}]`, string(got[1].Attachments))
		next, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: ws.ID, BeforeID: got[1].ID, Limit: 10})
		require.NoError(t, err)
		require.Len(t, next, 3)
		errs, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: ws.ID, Type: "error"})
		require.NoError(t, err)
		require.Len(t, errs, 2)
		none, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: ws.ID, Source: "canvas"})
		require.NoError(t, err)
		require.Empty(t, none)

		n, err := b.store.PruneActivity(b.ctx, b.clock.Now().Add(-2*time.Millisecond), 2)
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "bounded batch of the oldest")
		left, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: ws.ID})
		require.NoError(t, err)
		require.Len(t, left, 3)
		require.Equal(t, ids[2], left[2].ID)
	})

	t.Run("ListEventsFilters", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		w1, w2 := b.insertWorkspace(t, nil), b.insertWorkspace(t, nil)
		for _, e := range []store.EventInput{
			{Type: "A", WorkspaceID: w1.ID, Audience: store.AudienceAdmin},
			{Type: "B", WorkspaceID: w2.ID, Audience: store.AudienceAdmin},
			{Type: "A", WorkspaceID: w2.ID, Audience: store.AudienceAdmin},
		} {
			_, _, err := appendOne(b.ctx, b.store, e)
			require.NoError(t, err)
		}
		got, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "A"})
		require.NoError(t, err)
		require.Len(t, got, 2)
		got, err = b.store.ListEvents(b.ctx, store.EventFilter{WorkspaceID: w2.ID, Type: "A"})
		require.NoError(t, err)
		require.Len(t, got, 1)
		got, err = b.store.ListEvents(b.ctx, store.EventFilter{AfterID: got[0].ID})
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("SecurityEventsNewestFirst", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		var ids []int64
		for i := 0; i < 3; i++ {
			require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
				id, err := tx.InsertSecurityEvent(b.ctx, store.SecurityEvent{Kind: "k", Detail: json.RawMessage(`{"i":"x"}`), CreatedAt: b.clock.Now()})
				ids = append(ids, id)
				return err
			}))
		}
		got, err := b.store.ListSecurityEvents(b.ctx, store.SecurityEventFilter{Limit: 2})
		require.NoError(t, err)
		require.Equal(t, []int64{ids[2], ids[1]}, []int64{got[0].ID, got[1].ID})
		got, err = b.store.ListSecurityEvents(b.ctx, store.SecurityEventFilter{BeforeID: ids[1]})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.JSONEq(t, `{"i":"x"}`, string(got[0].Detail))
	})

	t.Run("LastProbeAtRoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		w := b.insertWorkspace(t, nil)
		w.LastProbeAt = b.clock.Now().Truncate(time.Millisecond).UTC()
		require.True(t, b.update(t, w))
		got, err := b.store.GetWorkspace(b.ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, w.LastProbeAt, got.LastProbeAt)
	})
}

func runTickets(t *testing.T, open Opener) {
	t.Run("TicketSingleUseAndExpiry", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		tk := store.Ticket{Hash: hashOf("apt_1"), PrincipalKind: "workspace", WorkspaceID: newID(), TokenID: newID(), ExpiresAt: now.Add(time.Minute)}
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertTicket(b.ctx, tk) }))
		got, err := b.store.ConsumeTicket(b.ctx, tk.Hash, now)
		require.NoError(t, err)
		require.Equal(t, tk.WorkspaceID, got.WorkspaceID)
		require.Equal(t, tk.ExpiresAt, got.ExpiresAt)
		_, err = b.store.ConsumeTicket(b.ctx, tk.Hash, now)
		require.ErrorIs(t, err, store.ErrNotFound, "single use")

		// Expired sessions and tickets are pruned; live ones stay.
		tokID := newID()
		require.True(t, b.insertToken(t, store.Token{ID: tokID, Kind: store.TokenAdmin, Name: "p", Hash: hashOf("apa_p"), Prefix: "apa_p"}))
		for i, exp := range []time.Time{now.Add(-time.Minute), now.Add(time.Hour)} {
			sess := store.Session{ID: newID(), Hash: hashOf(fmt.Sprint("s", i)), TokenID: tokID, CreatedAt: now, ExpiresAt: exp, LastSeenAt: now}
			require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertSession(b.ctx, sess) }))
		}
		old := store.Ticket{Hash: hashOf("apt_old"), PrincipalKind: "admin", ExpiresAt: now.Add(-time.Second)}
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertTicket(b.ctx, old) }))
		n, err := b.store.PruneExpired(b.ctx, now, 100)
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "one expired session and one expired ticket")
		_, err = b.store.SessionByHash(b.ctx, hashOf("s1"))
		require.NoError(t, err, "the live session stays")

		late := store.Ticket{Hash: hashOf("apt_2"), PrincipalKind: "admin", ExpiresAt: now.Add(time.Minute)}
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertTicket(b.ctx, late) }))
		_, err = b.store.ConsumeTicket(b.ctx, late.Hash, now.Add(time.Minute))
		require.ErrorIs(t, err, store.ErrNotFound, "expired at its expiry instant")
	})
}

func orEmpty(b json.RawMessage) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}
