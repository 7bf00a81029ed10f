package netguard

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAttemptBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		remaining time.Duration
		addrs     int
		want      time.Duration
	}{
		{"OneAddressGetsAll", 9 * time.Second, 1, 9 * time.Second},
		{"SharedEvenly", 9 * time.Second, 3, 3 * time.Second},
		{"ShareRaisedToMinimum", 3 * time.Second, 2, 2 * time.Second},
		{"MinimumCappedByRemaining", time.Second, 4, time.Second},
		{"NothingLeft", 0, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, attemptBudget(tc.remaining, tc.addrs, minAttemptBudget))
		})
	}
}
