package cron

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// series returns n instants start, start+step, … as RFC 3339 UTC strings.
func series(start string, n int, step time.Duration) []string {
	t, err := time.Parse(time.RFC3339, start)
	if err != nil {
		panic(err)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = t.Add(time.Duration(i) * step).UTC().Format(time.RFC3339)
	}
	return out
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// dstDay is one local calendar day of a zone, as the UTC interval (from, to]
// covering it exactly.
type dstDay struct {
	zone     string
	from, to string
}

// dstCase is an expression and its exact fire instants on a dstDay, under
// dst_gap=shift, dst_fold=once (defaults) and under dst_gap=skip,
// dst_fold=both.
type dstCase struct {
	name      string
	expr      string
	anchor    string // for @every
	shiftOnce []string
	skipBoth  []string
}

// TestDSTTable pins the SPEC §6.2 DST rules with exact UTC instants on the
// 2026 transition days of New York, London, Lord Howe (30-minute DST),
// Santiago (midnight does not exist in spring) and Tokyo (no DST). The
// transitions were checked against zdump -v (tzdata 2025b) and Go's embedded
// tzdata (TestTransitionInstants).
func TestDSTTable(t *testing.T) {
	t.Parallel()
	none := []string{}
	tests := []struct {
		name  string
		day   dstDay
		cases []dstCase
	}{
		{
			// 02:00 EST → 03:00 EDT at 07:00Z; the day is 05:00Z-04:00Z.
			name: "NewYorkSpringForward",
			day:  dstDay{"America/New_York", "2026-03-08T04:59:59Z", "2026-03-09T03:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "30 2 * * *",
					shiftOnce: []string{"2026-03-08T07:30:00Z"}, skipBoth: none},
				{name: "MultiValueCollision", expr: "30 1,2,3 * * *",
					shiftOnce: []string{"2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"},
					skipBoth:  []string{"2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: concat(series("2026-03-08T05:00:00Z", 2, time.Hour), series("2026-03-08T07:00:00Z", 21, time.Hour))},
				{name: "Step", expr: "0 */2 * * *",
					shiftOnce: concat([]string{"2026-03-08T05:00:00Z"}, series("2026-03-08T08:00:00Z", 10, 2*time.Hour))},
				{name: "Range", expr: "0 1-3 * * *",
					shiftOnce: []string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"}},
				{name: "Every", expr: "@every 5h", anchor: "2026-03-01T00:00:00Z",
					shiftOnce: series("2026-03-08T07:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// 02:00 EDT → 01:00 EST at 06:00Z; the day is 04:00Z-05:00Z.
			name: "NewYorkFallBack",
			day:  dstDay{"America/New_York", "2026-11-01T03:59:59Z", "2026-11-02T04:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "30 1 * * *",
					shiftOnce: []string{"2026-11-01T05:30:00Z"},
					skipBoth:  []string{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"}},
				{name: "MultiValue", expr: "30 0,1,2 * * *",
					shiftOnce: []string{"2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T07:30:00Z"},
					skipBoth:  []string{"2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: series("2026-11-01T04:00:00Z", 25, time.Hour)},
				{name: "Step", expr: "0 */2 * * *",
					shiftOnce: concat([]string{"2026-11-01T04:00:00Z"}, series("2026-11-01T07:00:00Z", 11, 2*time.Hour))},
				{name: "Range", expr: "0 1-3 * * *",
					shiftOnce: series("2026-11-01T05:00:00Z", 4, time.Hour)},
				{name: "Every", expr: "@every 5h", anchor: "2026-10-25T00:00:00Z",
					shiftOnce: series("2026-11-01T07:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// 01:00 GMT → 02:00 BST at 01:00Z; the day is 00:00Z-23:00Z.
			name: "LondonSpringForward",
			day:  dstDay{"Europe/London", "2026-03-28T23:59:59Z", "2026-03-29T22:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "30 1 * * *",
					shiftOnce: []string{"2026-03-29T01:30:00Z"}, skipBoth: none},
				{name: "MultiValueCollision", expr: "30 1,2 * * *",
					shiftOnce: []string{"2026-03-29T01:30:00Z"},
					skipBoth:  []string{"2026-03-29T01:30:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: series("2026-03-29T00:00:00Z", 23, time.Hour)},
				{name: "Step", expr: "*/20 1 * * *", shiftOnce: none},
				{name: "Range", expr: "0 0-2 * * *",
					shiftOnce: []string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"}},
				{name: "Every", expr: "@every 5h", anchor: "2026-03-22T00:00:00Z",
					shiftOnce: series("2026-03-29T02:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// 02:00 BST → 01:00 GMT at 01:00Z; the day is 23:00Z-00:00Z.
			name: "LondonFallBack",
			day:  dstDay{"Europe/London", "2026-10-24T22:59:59Z", "2026-10-25T23:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "30 1 * * *",
					shiftOnce: []string{"2026-10-25T00:30:00Z"},
					skipBoth:  []string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"}},
				{name: "MultiValue", expr: "30 0,1,2 * * *",
					shiftOnce: []string{"2026-10-24T23:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T02:30:00Z"},
					skipBoth:  []string{"2026-10-24T23:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: series("2026-10-24T23:00:00Z", 25, time.Hour)},
				{name: "Step", expr: "*/20 1 * * *",
					shiftOnce: series("2026-10-25T00:00:00Z", 6, 20*time.Minute)},
				{name: "Range", expr: "0 0-2 * * *",
					shiftOnce: series("2026-10-24T23:00:00Z", 4, time.Hour)},
				{name: "Every", expr: "@every 5h", anchor: "2026-10-18T00:00:00Z",
					shiftOnce: series("2026-10-25T02:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// 02:00 +11 → 01:30 +10:30 at 15:00Z; the day is 13:00Z-13:30Z.
			name: "LordHoweFallBack",
			day:  dstDay{"Australia/Lord_Howe", "2026-04-04T12:59:59Z", "2026-04-05T13:29:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "45 1 * * *",
					shiftOnce: []string{"2026-04-04T14:45:00Z"},
					skipBoth:  []string{"2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z"}},
				{name: "MultiValue", expr: "15,45 1 * * *",
					shiftOnce: []string{"2026-04-04T14:15:00Z", "2026-04-04T14:45:00Z"},
					skipBoth:  []string{"2026-04-04T14:15:00Z", "2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *", // no whole hour repeats
					shiftOnce: concat(series("2026-04-04T13:00:00Z", 2, time.Hour), series("2026-04-04T15:30:00Z", 22, time.Hour))},
				{name: "Step", expr: "*/30 1 * * *",
					shiftOnce: series("2026-04-04T14:00:00Z", 3, 30*time.Minute)},
				{name: "Range", expr: "30 1-2 * * *",
					shiftOnce: []string{"2026-04-04T14:30:00Z", "2026-04-04T15:00:00Z", "2026-04-04T16:00:00Z"}},
				{name: "Every", expr: "@every 5h", anchor: "2026-03-29T00:00:00Z",
					shiftOnce: series("2026-04-04T16:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// 02:00 +10:30 → 02:30 +11 at 15:30Z; the day is 13:30Z-13:00Z.
			name: "LordHoweSpringForward",
			day:  dstDay{"Australia/Lord_Howe", "2026-10-03T13:29:59Z", "2026-10-04T12:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "15 2 * * *",
					shiftOnce: []string{"2026-10-03T15:45:00Z"}, skipBoth: none},
				{name: "MultiValueCollision", expr: "15,45 2 * * *",
					shiftOnce: []string{"2026-10-03T15:45:00Z"},
					skipBoth:  []string{"2026-10-03T15:45:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: concat(series("2026-10-03T13:30:00Z", 2, time.Hour), series("2026-10-03T16:00:00Z", 21, time.Hour))},
				{name: "Step", expr: "*/15 2 * * *",
					shiftOnce: []string{"2026-10-03T15:30:00Z", "2026-10-03T15:45:00Z"}},
				{name: "Range", expr: "0 1-3 * * *",
					shiftOnce: []string{"2026-10-03T14:30:00Z", "2026-10-03T16:00:00Z"}},
				{name: "Every", expr: "@every 5h", anchor: "2026-09-27T00:00:00Z",
					shiftOnce: series("2026-10-03T16:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// Saturday 24:00 -03 → 23:00 -04 at 03:00Z on 5 April; the
			// Saturday is 03:00Z-04:00Z.
			name: "SantiagoFallBack",
			day:  dstDay{"America/Santiago", "2026-04-04T02:59:59Z", "2026-04-05T03:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "30 23 * * *",
					shiftOnce: []string{"2026-04-05T02:30:00Z"},
					skipBoth:  []string{"2026-04-05T02:30:00Z", "2026-04-05T03:30:00Z"}},
				{name: "MultiValue", expr: "0 0,23 * * *",
					shiftOnce: []string{"2026-04-04T03:00:00Z", "2026-04-05T02:00:00Z"},
					skipBoth:  []string{"2026-04-04T03:00:00Z", "2026-04-05T02:00:00Z", "2026-04-05T03:00:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: series("2026-04-04T03:00:00Z", 25, time.Hour)},
				{name: "Step", expr: "*/30 23 * * *",
					shiftOnce: series("2026-04-05T02:00:00Z", 4, 30*time.Minute)},
				{name: "Range", expr: "0 22-23 * * *",
					shiftOnce: series("2026-04-05T01:00:00Z", 3, time.Hour)},
				{name: "Every", expr: "@every 5h", anchor: "2026-03-29T00:00:00Z",
					shiftOnce: series("2026-04-04T06:00:00Z", 5, 5*time.Hour)},
			},
		},
		{
			// Sunday 00:00 -04 → 01:00 -03 at 04:00Z: midnight does not
			// exist; the Sunday is 04:00Z-03:00Z.
			name: "SantiagoSpringForward",
			day:  dstDay{"America/Santiago", "2026-09-06T03:59:59Z", "2026-09-07T02:59:59Z"},
			cases: []dstCase{
				{name: "FixedTimeMidnight", expr: "0 0 * * *",
					shiftOnce: []string{"2026-09-06T04:00:00Z"}, skipBoth: none},
				{name: "MultiValueCollision", expr: "0 0,1 * * *",
					shiftOnce: []string{"2026-09-06T04:00:00Z"},
					skipBoth:  []string{"2026-09-06T04:00:00Z"}},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: series("2026-09-06T04:00:00Z", 23, time.Hour)},
				{name: "Step", expr: "*/30 0-1 * * *",
					shiftOnce: []string{"2026-09-06T04:00:00Z", "2026-09-06T04:30:00Z"}},
				{name: "Range", expr: "0 0-2 * * *",
					shiftOnce: []string{"2026-09-06T04:00:00Z", "2026-09-06T05:00:00Z"}},
				{name: "Every", expr: "@every 5h", anchor: "2026-08-30T00:00:00Z",
					shiftOnce: series("2026-09-06T07:00:00Z", 4, 5*time.Hour)},
			},
		},
		{
			// No DST: the same rules change nothing.
			name: "TokyoNoDST",
			day:  dstDay{"Asia/Tokyo", "2026-03-07T14:59:59Z", "2026-03-08T14:59:59Z"},
			cases: []dstCase{
				{name: "FixedTime", expr: "30 2 * * *",
					shiftOnce: []string{"2026-03-07T17:30:00Z"}},
				{name: "MultiValue", expr: "30 1,2,3 * * *",
					shiftOnce: series("2026-03-07T16:30:00Z", 3, time.Hour)},
				{name: "WildcardHour", expr: "0 * * * *",
					shiftOnce: series("2026-03-07T15:00:00Z", 24, time.Hour)},
				{name: "Step", expr: "0 */2 * * *",
					shiftOnce: series("2026-03-07T15:00:00Z", 12, 2*time.Hour)},
				{name: "Range", expr: "0 1-3 * * *",
					shiftOnce: series("2026-03-07T16:00:00Z", 3, time.Hour)},
				{name: "Every", expr: "@every 5h", anchor: "2026-03-01T00:00:00Z",
					shiftOnce: series("2026-03-07T16:00:00Z", 5, 5*time.Hour)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			from, err := time.Parse(time.RFC3339, tt.day.from)
			require.NoError(t, err)
			to, err := time.Parse(time.RFC3339, tt.day.to)
			require.NoError(t, err)
			for _, c := range tt.cases {
				policies := []struct {
					name string
					gap  DSTGap
					fold DSTFold
					want []string
				}{
					{"ShiftOnce", DSTGapShift, DSTFoldOnce, c.shiftOnce},
					{"SkipBoth", DSTGapSkip, DSTFoldBoth, c.skipBoth},
				}
				for _, p := range policies {
					t.Run(c.name+p.name, func(t *testing.T) {
						want := p.want
						if want == nil { // the policies do not apply
							want = c.shiftOnce
						}
						opts := Options{Timezone: tt.day.zone, DSTGap: p.gap, DSTFold: p.fold}
						if c.anchor != "" {
							opts.Anchor, err = time.Parse(time.RFC3339, c.anchor)
							require.NoError(t, err)
						}
						s, err := Parse(c.expr, opts)
						require.NoError(t, err)
						require.Equal(t, want, firesBetween(t, s, from, to), "%s in %s", c.expr, tt.day.zone)
					})
				}
			}
		})
	}
}

// firesBetween returns the fire times in (from, to] as RFC 3339 UTC strings.
func firesBetween(t *testing.T, s *Schedule, from, to time.Time) []string {
	t.Helper()
	out := []string{}
	for _, f := range s.NextN(from, MaxNextN) {
		if f.After(to) {
			break
		}
		out = append(out, f.UTC().Format(time.RFC3339))
	}
	return out
}

// TestDSTWholeDayCounts checks the spec's headline numbers: "0 * * * *"
// fires 23 times on a spring-forward day and 25 times on a fall-back day.
func TestDSTWholeDayCounts(t *testing.T) {
	t.Parallel()
	s, err := Parse("0 * * * *", Options{Timezone: "America/New_York"})
	require.NoError(t, err)
	count := func(from, to string) int {
		f, err := time.Parse(time.RFC3339, from)
		require.NoError(t, err)
		e, err := time.Parse(time.RFC3339, to)
		require.NoError(t, err)
		return len(firesBetween(t, s, f, e))
	}
	require.Equal(t, 23, count("2026-03-08T04:59:59Z", "2026-03-09T03:59:59Z"))
	require.Equal(t, 25, count("2026-11-01T03:59:59Z", "2026-11-02T04:59:59Z"))
	require.Equal(t, 24, count("2026-11-02T04:59:59Z", "2026-11-03T04:59:59Z"))
}

// TestTransitionInstants pins the transitions the DST table relies on, as
// printed by zdump -v -c 2026,2028 (tzdata 2025b), against the embedded
// tzdata.
func TestTransitionInstants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		zone        string
		transitions []string
	}{
		{"America/New_York", []string{"2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z", "2027-03-14T07:00:00Z", "2027-11-07T06:00:00Z"}},
		{"Europe/London", []string{"2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2027-03-28T01:00:00Z", "2027-10-31T01:00:00Z"}},
		{"Australia/Lord_Howe", []string{"2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z", "2027-04-03T15:00:00Z", "2027-10-02T15:30:00Z"}},
		{"America/Santiago", []string{"2026-04-05T03:00:00Z", "2026-09-06T04:00:00Z", "2027-04-04T03:00:00Z", "2027-09-05T04:00:00Z"}},
		{"Asia/Tokyo", nil},
	}
	for _, tt := range tests {
		loc, err := LoadLocation(tt.zone)
		require.NoError(t, err)
		var got []string
		for _, tr := range transitions(loc, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)) {
			got = append(got, time.Unix(tr, 0).UTC().Format(time.RFC3339))
		}
		require.Equal(t, tt.transitions, got, tt.zone)
	}
}

// TestTimeDateIsNotADSTRule documents why the package resolves wall times
// itself: time.Date resolves the same kind of non-existent wall time
// differently from zone to zone, while Next applies one rule.
func TestTimeDateIsNotADSTRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		zone      string
		y         int
		m         time.Month
		d, h, min int
		timeDate  string // what time.Date makes of the non-existent wall time
		shifted   string // what dst_gap=shift makes of it
	}{
		{"America/New_York", 2026, 3, 8, 2, 30, "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"},
		{"Australia/Lord_Howe", 2026, 10, 4, 2, 15, "2026-10-04T02:45:00+11:00", "2026-10-04T02:45:00+11:00"},
		{"America/Santiago", 2026, 9, 6, 0, 0, "2026-09-05T23:00:00-04:00", "2026-09-06T01:00:00-03:00"},
	}
	for _, tt := range tests {
		loc, err := LoadLocation(tt.zone)
		require.NoError(t, err)
		require.Equal(t, tt.timeDate, time.Date(tt.y, tt.m, tt.d, tt.h, tt.min, 0, 0, loc).Format(time.RFC3339), tt.zone)

		s, err := Parse(strconv.Itoa(tt.min)+" "+strconv.Itoa(tt.h)+" * * *", Options{Timezone: tt.zone})
		require.NoError(t, err)
		dayStart := time.Date(tt.y, tt.m, tt.d, 0, 0, 0, 0, time.UTC).Add(-15 * time.Hour)
		next, ok := s.Next(dayStart)
		require.True(t, ok)
		require.Equal(t, tt.shifted, next.Format(time.RFC3339), tt.zone)
	}
}
