package scheduler

import (
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestPlanDue(t *testing.T) {
	t.Parallel()
	type missed struct {
		first, last string
		count       int
		reason      string
	}
	for name, tc := range map[string]struct {
		expr, zone, catchup string
		window              time.Duration
		last, now           string
		fires               []Fire
		missed              []missed
		lastSlot, next      string
	}{
		"NothingDueYet": {
			expr: "* * * * *", last: "2027-01-10T10:00:00Z", now: "2027-01-10T10:00:30Z",
			lastSlot: "2027-01-10T10:00:00Z", next: "2027-01-10T10:01:00Z",
		},
		"OneSlotOnTime": {
			expr: "* * * * *", last: "2027-01-10T10:00:00Z", now: "2027-01-10T10:01:00.2Z",
			fires:    []Fire{{at("2027-01-10T10:01:00Z"), store.TriggerSchedule}},
			lastSlot: "2027-01-10T10:01:00Z", next: "2027-01-10T10:02:00Z",
		},
		"LatestAfterThreeHoursDown": {
			expr: "* * * * *", last: "2027-01-10T10:00:00Z", now: "2027-01-10T13:00:05Z",
			fires:    []Fire{{at("2027-01-10T13:00:00Z"), store.TriggerSchedule}},
			missed:   []missed{{"2027-01-10T10:01:00Z", "2027-01-10T12:59:00Z", 179, ReasonSuperseded}},
			lastSlot: "2027-01-10T13:00:00Z", next: "2027-01-10T13:01:00Z",
		},
		"LatestFoundLateIsACatchup": {
			expr: "0 * * * *", last: "2027-01-10T10:00:00Z", now: "2027-01-10T13:00:45Z",
			fires:    []Fire{{at("2027-01-10T13:00:00Z"), store.TriggerCatchup}},
			missed:   []missed{{"2027-01-10T11:00:00Z", "2027-01-10T12:00:00Z", 2, ReasonSuperseded}},
			lastSlot: "2027-01-10T13:00:00Z", next: "2027-01-10T14:00:00Z",
		},
		"LatestWithWindow": {
			expr: "* * * * *", window: 30 * time.Minute, last: "2027-01-10T10:00:00Z", now: "2027-01-10T13:00:05Z",
			fires: []Fire{{at("2027-01-10T13:00:00Z"), store.TriggerSchedule}},
			missed: []missed{
				{"2027-01-10T10:01:00Z", "2027-01-10T12:30:00Z", 150, ReasonWindow},
				{"2027-01-10T12:31:00Z", "2027-01-10T12:59:00Z", 29, ReasonSuperseded},
			},
			lastSlot: "2027-01-10T13:00:00Z", next: "2027-01-10T13:01:00Z",
		},
		"LatestSlotOutsideWindowRunsNothing": {
			expr: "0 0 * * *", window: time.Hour, last: "2027-01-08T00:00:00Z", now: "2027-01-10T05:00:00Z",
			missed:   []missed{{"2027-01-09T00:00:00Z", "2027-01-10T00:00:00Z", 2, ReasonWindow}},
			lastSlot: "2027-01-10T00:00:00Z", next: "2027-01-11T00:00:00Z",
		},
		"NoneRunsOnlyAnOnTimeSlot": {
			expr: "* * * * *", catchup: CatchupNone, last: "2027-01-10T10:00:00Z", now: "2027-01-10T10:03:05Z",
			fires:    []Fire{{at("2027-01-10T10:03:00Z"), store.TriggerSchedule}},
			missed:   []missed{{"2027-01-10T10:01:00Z", "2027-01-10T10:02:00Z", 2, ReasonNoCatchup}},
			lastSlot: "2027-01-10T10:03:00Z", next: "2027-01-10T10:04:00Z",
		},
		"NoneLateRunsNothing": {
			expr: "* * * * *", catchup: CatchupNone, last: "2027-01-10T10:00:00Z", now: "2027-01-10T10:03:45Z",
			missed:   []missed{{"2027-01-10T10:01:00Z", "2027-01-10T10:03:00Z", 3, ReasonNoCatchup}},
			lastSlot: "2027-01-10T10:03:00Z", next: "2027-01-10T10:04:00Z",
		},
		"AllRunsEverySlot": {
			expr: "0 * * * *", catchup: CatchupAll, last: "2027-01-10T10:00:00Z", now: "2027-01-10T12:00:01Z",
			fires:    []Fire{{at("2027-01-10T11:00:00Z"), store.TriggerCatchup}, {at("2027-01-10T12:00:00Z"), store.TriggerSchedule}},
			lastSlot: "2027-01-10T12:00:00Z", next: "2027-01-10T13:00:00Z",
		},
		"LongBacklogAccountedInBoundedSteps": {
			expr: "* * * * * *", last: "2027-01-10T10:00:00Z", now: "2027-01-10T13:00:00Z",
			missed:   []missed{{"2027-01-10T10:00:01Z", "2027-01-10T12:46:40Z", maxEnumerate, ReasonBacklog}},
			lastSlot: "2027-01-10T12:46:40Z", next: "2027-01-10T12:46:41Z",
		},
		// Fall-back day in New York: 01:00 happens twice; an hourly
		// schedule fires at each real hour (SPEC §6.2).
		"HourlyOverFallBack": {
			expr: "0 * * * *", zone: "America/New_York", last: "2027-11-07T04:30:00Z", now: "2027-11-07T08:00:02Z",
			fires:    []Fire{{at("2027-11-07T08:00:00Z"), store.TriggerSchedule}},
			missed:   []missed{{"2027-11-07T05:00:00Z", "2027-11-07T07:00:00Z", 3, ReasonSuperseded}},
			lastSlot: "2027-11-07T08:00:00Z", next: "2027-11-07T09:00:00Z",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec := Spec{CronExpr: tc.expr, Timezone: tc.zone, Prompt: "p", CatchupPolicy: tc.catchup, CatchupWindow: Duration(tc.window)}
			if spec.CatchupPolicy == CatchupAll {
				spec.OverlapPolicy = "allow_all" // PlanDue does not look at overlap
			}
			cs, err := spec.Parse()
			require.NoError(t, err)
			p := PlanDue(cs, spec, at(tc.last), at(tc.now))
			require.Equal(t, tc.fires, p.Fires)
			var got []missed
			for _, m := range p.Missed {
				got = append(got, missed{m.First.Format(time.RFC3339), m.Last.Format(time.RFC3339), m.Count, m.Reason})
			}
			require.Equal(t, tc.missed, got)
			require.Equal(t, at(tc.lastSlot), p.LastSlot)
			require.Equal(t, at(tc.next), p.Next)
		})
	}
}

func TestSpecNormalizeNamesTheField(t *testing.T) {
	t.Parallel()
	for field, spec := range map[string]Spec{
		"prompt":         {CronExpr: "* * * * *"},
		"dst_gap":        {Prompt: "p", DSTGap: "later"},
		"overlap_policy": {Prompt: "p", OverlapPolicy: "sometimes"},
		"catchup_policy": {Prompt: "p", CatchupPolicy: "all"},
		"jitter":         {Prompt: "p", Jitter: Duration(time.Second)},
		"timeout":        {Prompt: "p", Timeout: Duration(25 * time.Hour)},
		"max_attempts":   {Prompt: "p", MaxAttempts: 11},
		"busy_wait":      {Prompt: "p", BusyWait: ptr(Duration(-time.Second))},
	} {
		err := spec.Normalize()
		require.Error(t, err, field)
		require.Contains(t, err.Error(), field+":")
	}
	s := Spec{Prompt: "p"}
	require.NoError(t, s.Normalize())
	require.Equal(t, Spec{Prompt: "p", DSTGap: "shift", DSTFold: "once", OverlapPolicy: "skip", CatchupPolicy: "latest",
		BusyWait: ptr(Duration(DefaultBusyWait)), Timeout: Duration(DefaultTimeout), MaxAttempts: 3}, s)
	zero := Spec{Prompt: "p", BusyWait: ptr(Duration(0))}
	require.NoError(t, zero.Normalize())
	require.Equal(t, time.Duration(0), zero.BusyWaitOrDefault(), "no wait is a choice, kept")

	_, _, err := DecodeInput([]byte(`{"name":"x","cron_expr":"* * * * *","prompt":"p","timeout":"0s"}`), nil)
	require.ErrorContains(t, err, "timeout:")
	_, _, err = DecodeInput([]byte(`{"max_attempts":0}`), nil)
	require.ErrorContains(t, err, "max_attempts:")
	in, _, err := DecodeInput([]byte(`{"enabled":null}`), nil)
	require.NoError(t, err)
	require.Nil(t, in.Enabled, "null is absent, not false")

	bad := Spec{CronExpr: "61 * * * *", Prompt: "p"}
	_, err = bad.Parse()
	require.ErrorContains(t, err, "cron_expr: minute field")
	bad = Spec{CronExpr: "* * * * *", Timezone: "Mars/Olympus", Prompt: "p"}
	_, err = bad.Parse()
	require.ErrorContains(t, err, "timezone")
}

func ptr[T any](v T) *T { return &v }
