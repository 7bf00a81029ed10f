package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

// The harness itself, small: every slot of the window is fired exactly once
// and accounted for. (Figures are the harness's output, not asserted here.)
func TestSchedulerHarness(t *testing.T) {
	t.Parallel()
	backends := map[string]string{"sqlite": ""}
	if os.Getenv(testenv.PostgresURLEnv) != "" || testenv.InCI() {
		backends["postgres"] = testenv.PostgresSchema(t)
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var log strings.Builder
			res, err := RunScheduler(context.Background(), SchedulerOptions{
				DatabaseURL: url, Workspaces: 3, PerWorkspace: 2, Cron: "* * * * * *", MaxConcurrent: 2,
				RunTimeout: 10 * time.Second, Duration: 3 * time.Second, Log: &log,
			})
			require.NoError(t, err, log.String())
			require.Equal(t, 3*2*3, res.SlotsDue)
			require.Equal(t, res.SlotsDue, res.Fired, "every slot fired: %+v", res)
			require.Zero(t, res.Duplicated)
			require.Zero(t, res.Unaccounted)
			var out strings.Builder
			res.Print(&out)
			require.Contains(t, out.String(), "slots due 18, fired 18")
		})
	}
}
