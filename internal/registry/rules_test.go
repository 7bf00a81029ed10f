package registry

import (
	"math"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

func TestErrorRateHysteresis(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		reasons []string
		rate    float64
		want    []string
	}{
		{"HealthyStaysHealthy", nil, 0.3, nil},
		{"HighDegrades", nil, 0.5, []string{ReasonErrorRate}},
		{"MiddleKeepsDegraded", []string{ReasonErrorRate}, 0.3, []string{ReasonErrorRate}},
		{"LowRecovers", []string{ReasonErrorRate}, 0.09, nil},
		{"OtherReasonKept", []string{ReasonCardUnreachable, ReasonErrorRate}, 0.0, []string{ReasonCardUnreachable}},
		{"SetSortedNoDup", []string{ReasonErrorRate, ReasonCardUnreachable}, 0.9, []string{ReasonCardUnreachable, ReasonErrorRate}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, errorRateReason(tc.reasons, tc.rate))
		})
	}
}

func TestTransitionEvent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		from, to   string
		fromR, toR []string
		want       string
	}{
		{store.StatusAwaitingAgent, store.StatusOnline, nil, nil, "WORKSPACE_ONLINE"},
		{store.StatusOffline, store.StatusOnline, nil, nil, "WORKSPACE_ONLINE"},
		{store.StatusOnline, store.StatusDegraded, nil, []string{"error_rate"}, "WORKSPACE_DEGRADED"},
		{store.StatusDegraded, store.StatusDegraded, []string{"error_rate"}, []string{"agent_card_unreachable", "error_rate"}, "WORKSPACE_DEGRADED"},
		{store.StatusDegraded, store.StatusDegraded, []string{"error_rate"}, []string{"error_rate"}, ""},
		{store.StatusDegraded, store.StatusOnline, []string{"error_rate"}, nil, "WORKSPACE_ONLINE"},
		{store.StatusOnline, store.StatusOffline, nil, nil, "WORKSPACE_OFFLINE"},
		{store.StatusPaused, store.StatusOffline, nil, nil, "WORKSPACE_RESUMED"},
		{store.StatusOnline, store.StatusPaused, nil, nil, "WORKSPACE_PAUSED"},
		{store.StatusOnline, store.StatusRemoved, nil, nil, "WORKSPACE_REMOVED"},
		{store.StatusOnline, store.StatusOnline, nil, nil, ""},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, transitionEvent(tc.from, tc.to, tc.fromR, tc.toR), "%s→%s", tc.from, tc.to)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	require.NoError(t, validName("name", "Security Auditor"))
	require.ErrorContains(t, validName("name", "  "), "name: must not be empty")
	require.ErrorContains(t, validName("name", strings.Repeat("x", 256)), "at most 255")
	require.ErrorContains(t, validName("name", "two\nlines"), "one line")
	require.NoError(t, validText("role", "audits\ncode", 100))
	require.ErrorContains(t, validText("role", "nul\x00", 100), "control characters")
	require.ErrorContains(t, validRate("error_rate", math.NaN()), "between 0 and 1")
	require.ErrorContains(t, validRate("error_rate", 1.5), "between 0 and 1")
	require.ErrorContains(t, validRate("error_rate", -0.1), "between 0 and 1")
	require.NoError(t, validRate("error_rate", 0.25))
	require.Equal(t, "héllo", truncate("héllo wörld", 5))
}

// The tree: r1 → a → a1, a2; r1 → b; r2 (another root) → c.
func tree() map[string]string {
	return map[string]string{"r1": "", "a": "r1", "a1": "a", "a2": "a", "b": "r1", "r2": "", "c": "r2"}
}

func TestCanTalk(t *testing.T) {
	t.Parallel()
	p := tree()
	allowed := [][2]string{
		{"a", "a"}, {"a", "r1"}, {"r1", "a"}, {"a", "a1"}, {"a1", "a"}, // self, parent, child
		{"a", "b"}, {"a1", "a2"}, // siblings
		{"a1", "r1"}, {"r1", "a1"}, // ancestor, descendant
	}
	denied := [][2]string{
		{"r1", "r2"}, // roots are not siblings
		{"a1", "b"},  // cousin... uncle
		{"a", "c"}, {"c", "a1"}, {"a", "unknown"}, {"unknown", "a"},
	}
	for _, pair := range allowed {
		require.True(t, canTalk(p, pair[0], pair[1]), "%s → %s", pair[0], pair[1])
	}
	for _, pair := range denied {
		require.False(t, canTalk(p, pair[0], pair[1]), "%s → %s", pair[0], pair[1])
	}
	cyclic := map[string]string{"x": "y", "y": "x", "z": ""}
	require.False(t, canTalk(cyclic, "z", "x"), "a corrupt cycle terminates")
}

func TestDescendants(t *testing.T) {
	t.Parallel()
	var nodes []store.HierarchyNode
	for id, parent := range tree() {
		nodes = append(nodes, store.HierarchyNode{ID: id, ParentID: parent})
	}
	got := descendants(nodes, "r1")
	require.ElementsMatch(t, []string{"a", "b", "a1", "a2"}, got)
	require.Less(t, indexOf(got, "a"), indexOf(got, "a1"), "parents before children")
	require.Empty(t, descendants(nodes, "a1"))
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
