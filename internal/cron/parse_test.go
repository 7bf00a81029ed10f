package cron

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testAnchor = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func mustParse(t *testing.T, expr string, opts Options) *Schedule {
	t.Helper()
	if opts.Anchor.IsZero() {
		opts.Anchor = testAnchor
	}
	s, err := Parse(expr, opts)
	require.NoError(t, err, expr)
	return s
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return tm
}

func utcStrings(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.UTC().Format(time.RFC3339)
	}
	return out
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr     string
		timezone string
		norm     string
		zone     string
		fixed    bool
	}{
		{expr: "* * * * *", norm: "* * * * *", zone: "UTC"},
		{expr: "  30   2 * * *  ", norm: "30 2 * * *", zone: "UTC", fixed: true},
		{expr: "0 9,17 * * 1-5", norm: "0 9,17 * * 1-5", zone: "UTC", fixed: true},
		{expr: "0\t9,17\t*\t*\tMON-FRI", norm: "0 9,17 * * 1-5", zone: "UTC", fixed: true},
		{expr: "*/15 * * * *", norm: "*/15 * * * *", zone: "UTC"},
		{expr: "*/1 * * * *", norm: "* * * * *", zone: "UTC"},
		{expr: "0 */2 * * *", norm: "0 */2 * * *", zone: "UTC"},
		{expr: "0 1-3 * * *", norm: "0 1-3 * * *", zone: "UTC"},
		{expr: "05 02 * * *", norm: "5 2 * * *", zone: "UTC", fixed: true},
		{expr: "0 3-3 * * *", norm: "0 3 * * *", zone: "UTC", fixed: true},
		{expr: "50/20 * * * *", norm: "50 * * * *", zone: "UTC"},
		{expr: "50/20 3 * * *", norm: "50 3 * * *", zone: "UTC", fixed: true},
		{expr: "10/20 3 * * *", norm: "10-59/20 3 * * *", zone: "UTC"},
		{expr: "0 0 1 jan,Jul *", norm: "0 0 1 1,7 *", zone: "UTC", fixed: true},
		{expr: "0 0 * * sun,7", norm: "0 0 * * 0,7", zone: "UTC", fixed: true},
		{expr: "0 0 * * 5-7", norm: "0 0 * * 5-7", zone: "UTC", fixed: true},
		{expr: "*/10 * * * * *", norm: "*/10 * * * * *", zone: "UTC"},
		{expr: "0 30 2 * * *", norm: "0 30 2 * * *", zone: "UTC", fixed: true},
		{expr: "0,30 30 2 * * *", norm: "0,30 30 2 * * *", zone: "UTC", fixed: true},
		{expr: "@yearly", norm: "@yearly", zone: "UTC", fixed: true},
		{expr: "@ANNUALLY", norm: "@yearly", zone: "UTC", fixed: true},
		{expr: "@monthly", norm: "@monthly", zone: "UTC", fixed: true},
		{expr: "@weekly", norm: "@weekly", zone: "UTC", fixed: true},
		{expr: "@daily", norm: "@daily", zone: "UTC", fixed: true},
		{expr: "@midnight", norm: "@daily", zone: "UTC", fixed: true},
		{expr: "@hourly", norm: "@hourly", zone: "UTC"},
		{expr: "@every 90s", norm: "@every 1m30s", zone: "UTC"},
		{expr: "@every 1h30m", norm: "@every 1h30m0s", zone: "UTC"},
		{expr: "CRON_TZ=America/New_York 30 2 * * *", norm: "30 2 * * *", zone: "America/New_York", fixed: true},
		{expr: "TZ=Europe/London @daily", norm: "@daily", zone: "Europe/London", fixed: true},
		{expr: "TZ=Asia/Tokyo 0 * * * *", timezone: "Asia/Tokyo", norm: "0 * * * *", zone: "Asia/Tokyo"},
		{expr: "0 0 * * *", timezone: "Australia/Lord_Howe", norm: "0 0 * * *", zone: "Australia/Lord_Howe", fixed: true},
		{expr: "0 0 * * *", timezone: "UTC", norm: "0 0 * * *", zone: "UTC", fixed: true},
		{expr: "TZ=Etc/UTC 0 0 * * *", norm: "0 0 * * *", zone: "Etc/UTC", fixed: true},
		{expr: "0 0 31 2 1", norm: "0 0 31 2 1", zone: "UTC", fixed: true},
		{expr: "0 0 29 2 *", norm: "0 0 29 2 *", zone: "UTC", fixed: true},
	}
	for _, tt := range tests {
		s := mustParse(t, tt.expr, Options{Timezone: tt.timezone})
		require.Equal(t, tt.norm, s.String(), tt.expr)
		require.Equal(t, tt.zone, s.Timezone(), tt.expr)
		require.Equal(t, tt.zone, s.Location().String(), tt.expr)
		require.Equal(t, tt.fixed, s.FixedTime(), tt.expr)

		// The normalized form means the same schedule.
		again := mustParse(t, s.String(), Options{Timezone: s.Timezone()})
		require.Equal(t, s.String(), again.String())
		require.Equal(t, s.FixedTime(), again.FixedTime())
		from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		require.Equal(t, s.NextN(from, 20), again.NextN(from, 20), tt.expr)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		expr  string
		opts  Options
		param string
		field string
		token string
		pos   int
		msg   string
	}{
		{name: "MinuteOutOfRange", expr: "61 * * * *", param: "cron_expr", field: "minute", token: "61", pos: 0,
			msg: `cron_expr: minute field "61": value 61 out of range 0-59`},
		{name: "ItemInList", expr: "0 1,24 * * *", param: "cron_expr", field: "hour", token: "24", pos: 4,
			msg: `cron_expr: hour field "24": value 24 out of range 0-23`},
		{name: "SecondOutOfRange", expr: "60 0 0 * * *", field: "second", token: "60", pos: 0,
			msg: `cron_expr: second field "60": value 60 out of range 0-59`},
		{name: "DayOfMonthZero", expr: "0 0 0 * *", field: "day-of-month", token: "0", pos: 4,
			msg: `cron_expr: day-of-month field "0": value 0 out of range 1-31`},
		{name: "MonthThirteen", expr: "0 0 1 13 *", field: "month", token: "13", pos: 6,
			msg: `cron_expr: month field "13": value 13 out of range 1-12`},
		{name: "DayOfWeekEight", expr: "0 0 * * 8", field: "day-of-week", token: "8", pos: 8,
			msg: `cron_expr: day-of-week field "8": value 8 out of range 0-7`},
		{name: "HugeNumber", expr: "0 99999999999999999999 * * *", field: "hour", token: "99999999999999999999", pos: 2,
			msg: `cron_expr: hour field "99999999999999999999": value 9999999999999999… out of range 0-23`},
		{name: "StepZero", expr: "*/0 * * * *", field: "minute", token: "*/0", pos: 0,
			msg: `cron_expr: minute field "*/0": step 0 out of range 1-60`},
		{name: "StepTooBig", expr: "0 */25 * * *", field: "hour", token: "*/25", pos: 2,
			msg: `cron_expr: hour field "*/25": step 25 out of range 1-24`},
		{name: "StepNotNumber", expr: "*/x * * * *", field: "minute", token: "*/x", pos: 0,
			msg: `cron_expr: minute field "*/x": step "x" is not a number`},
		{name: "StepMissing", expr: "*/ * * * *", field: "minute", token: "*/", pos: 0,
			msg: `cron_expr: minute field "*/": missing step after /`},
		{name: "DoubleStep", expr: "*/2/3 * * * *", field: "minute", token: "*/2/3", pos: 0,
			msg: `cron_expr: minute field "*/2/3": step "2/3" is not a number`},
		{name: "ValueMissingBeforeStep", expr: "/5 * * * *", field: "minute", token: "/5", pos: 0,
			msg: `cron_expr: minute field "/5": missing value before /`},
		{name: "ReversedRange", expr: "0 5-3 * * *", field: "hour", token: "5-3", pos: 2,
			msg: `cron_expr: hour field "5-3": range start 5 is after range end 3`},
		{name: "OpenRange", expr: "0 5- * * *", field: "hour", token: "5-", pos: 2,
			msg: `cron_expr: hour field "5-": missing range end`},
		{name: "EmptyListItem", expr: "0 1,,2 * * *", field: "hour", token: "", pos: 4,
			msg: `cron_expr: hour field "": empty list item`},
		{name: "NameInWrongField", expr: "0 MON * * *", field: "hour", token: "MON", pos: 2,
			msg: `cron_expr: hour field "MON": invalid value "MON" (want 0-23)`},
		{name: "UnknownName", expr: "0 0 * * FUNDAY", field: "day-of-week", token: "FUNDAY", pos: 8,
			msg: `cron_expr: day-of-week field "FUNDAY": invalid value "FUNDAY" (want 0-7 or a name such as MON)`},
		{name: "QuestionMark", expr: "0 0 ? * *", field: "day-of-month", token: "?", pos: 4,
			msg: `cron_expr: day-of-month field "?": invalid value "?" (want 1-31)`},
		{name: "Negative", expr: "-1 * * * *", field: "minute", token: "-1", pos: 0,
			msg: `cron_expr: minute field "-1": missing range start (negative values are not allowed)`},
		{name: "TooFewFields", expr: "* * * *", field: "expression", token: "* * * *", pos: 0,
			msg: `cron_expr: expression "* * * *": want 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second field, got 4`},
		{name: "TooManyFields", expr: "0 0 0 * * * 2027", field: "expression", token: "0 0 0 * * * 2027", pos: 0,
			msg: `cron_expr: expression "0 0 0 * * * 2027": want 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second field, got 7`},
		{name: "Empty", expr: "", field: "expression", pos: 0, msg: `cron_expr: empty expression`},
		{name: "Blank", expr: " \t ", field: "expression", pos: 0, msg: `cron_expr: empty expression`},
		{name: "UnknownDescriptor", expr: "@weekdays", field: "descriptor", token: "@weekdays", pos: 0,
			msg: `cron_expr: descriptor "@weekdays": unknown descriptor (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)`},
		{name: "DescriptorWithFields", expr: "@daily 0", field: "descriptor", token: "0", pos: 7,
			msg: `cron_expr: descriptor "0": unexpected text after @daily`},
		{name: "EveryZero", expr: "@every 0s", field: "@every", token: "0s", pos: 7,
			msg: `cron_expr: @every "0s": duration must be at least 1s`},
		{name: "EveryNegative", expr: "@every -5m", field: "@every", token: "-5m", pos: 7,
			msg: `cron_expr: @every "-5m": duration must be at least 1s`},
		{name: "EverySubSecond", expr: "@every 1500ms", field: "@every", token: "1500ms", pos: 7,
			msg: `cron_expr: @every "1500ms": duration must be a whole number of seconds`},
		{name: "EveryNoUnit", expr: "@every 90", field: "@every", token: "90", pos: 7,
			msg: `cron_expr: @every "90": invalid duration (want e.g. 90s, 15m or 1h30m)`},
		{name: "EveryMissing", expr: "@every", field: "@every", token: "@every", pos: 0,
			msg: `cron_expr: @every "@every": want exactly one duration, e.g. @every 90s`},
		{name: "EveryTwoDurations", expr: "@every 1m 30s", field: "@every", token: "@every", pos: 0,
			msg: `cron_expr: @every "@every": want exactly one duration, e.g. @every 90s`},
		{name: "TZZero", expr: "TZ=0 * * * * *", field: "timezone", token: "0", pos: 3,
			msg: `cron_expr: timezone "0": unknown IANA time zone (names are case-sensitive, e.g. America/New_York)`},
		{name: "TZEmpty", expr: "TZ= 0 0 * * *", field: "timezone", token: "TZ=", pos: 0,
			msg: `cron_expr: timezone "TZ=": empty time zone in TZ= prefix`},
		{name: "CronTZEmpty", expr: "CRON_TZ=", field: "timezone", token: "CRON_TZ=", pos: 0,
			msg: `cron_expr: timezone "CRON_TZ=": empty time zone in CRON_TZ= prefix`},
		{name: "PrefixOnly", expr: "CRON_TZ=Europe/Paris", field: "expression", token: "CRON_TZ=Europe/Paris", pos: 0,
			msg: `cron_expr: expression "CRON_TZ=Europe/Paris": no schedule after the CRON_TZ= prefix`},
		{name: "PrefixUnknownZone", expr: "CRON_TZ=Mars/Olympus_Mons 0 0 * * *", field: "timezone", token: "Mars/Olympus_Mons", pos: 8,
			msg: `cron_expr: timezone "Mars/Olympus_Mons": unknown IANA time zone (names are case-sensitive, e.g. America/New_York)`},
		{name: "PrefixLowercaseZone", expr: "TZ=america/new_york 0 0 * * *", field: "timezone", token: "america/new_york", pos: 3,
			msg: `cron_expr: timezone "america/new_york": unknown IANA time zone (names are case-sensitive, e.g. America/New_York)`},
		{name: "PrefixPathTraversal", expr: "TZ=../../etc/passwd 0 0 * * *", field: "timezone", token: "../../etc/passwd", pos: 3,
			msg: `cron_expr: timezone "../../etc/passwd": unknown IANA time zone (names are case-sensitive, e.g. America/New_York)`},
		{name: "PrefixLocal", expr: "TZ=Local 0 0 * * *", field: "timezone", token: "Local", pos: 3,
			msg: `cron_expr: timezone "Local": unknown IANA time zone (names are case-sensitive, e.g. America/New_York)`},
		{name: "PrefixConflict", expr: "CRON_TZ=Europe/Paris 0 0 * * *", opts: Options{Timezone: "America/New_York"},
			param: "timezone", field: "timezone", token: "America/New_York", pos: -1,
			msg: `timezone "America/New_York": differs from the zone "Europe/Paris" in the cron_expr CRON_TZ= prefix`},
		{name: "OptionUnknownZone", expr: "0 0 * * *", opts: Options{Timezone: "Nowhere/Land"},
			param: "timezone", field: "timezone", token: "Nowhere/Land", pos: -1,
			msg: `timezone "Nowhere/Land": unknown IANA time zone (names are case-sensitive, e.g. America/New_York)`},
		{name: "DSTGap", expr: "0 0 * * *", opts: Options{DSTGap: "sideways"},
			param: "dst_gap", field: "dst_gap", token: "sideways", pos: -1, msg: `dst_gap "sideways": must be "shift" or "skip"`},
		{name: "DSTFold", expr: "0 0 * * *", opts: Options{DSTFold: "twice"},
			param: "dst_fold", field: "dst_fold", token: "twice", pos: -1, msg: `dst_fold "twice": must be "once" or "both"`},
		{name: "NeverFires", expr: "0 0 31 2 *", field: "expression", token: "0 0 31 2 *", pos: -1,
			msg: `cron_expr: expression "0 0 31 2 *": never fires: no listed month has any of the listed days of the month`},
		{name: "NeverFiresInApril", expr: "0 0 31 4,6,9,11 *", field: "expression", token: "0 0 31 4,6,9,11 *", pos: -1,
			msg: `cron_expr: expression "0 0 31 4,6,9,11 *": never fires: no listed month has any of the listed days of the month`},
		{name: "TooLong", expr: "0 0 * * *" + strings.Repeat(" ", MaxExprLen), field: "expression",
			token: "0 0 * * *" + strings.Repeat(" ", MaxExprLen), pos: 0,
			msg: `cron_expr: expression "0 0 * * *                               "…: longer than 1024 bytes`},
		{name: "BinaryGarbage", expr: "\x00\xff * * * *", field: "minute", token: "\x00\xff", pos: 0,
			msg: `cron_expr: minute field "\x00\xff": invalid value "\x00\xff" (want 0-59)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.expr, tt.opts)
			require.Error(t, err)
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			param := tt.param
			if param == "" {
				param = ParamCronExpr
			}
			require.Equal(t, param, pe.Param)
			require.Equal(t, tt.field, pe.Field)
			require.Equal(t, tt.token, pe.Token)
			require.Equal(t, tt.pos, pe.Pos)
			require.Equal(t, tt.msg, err.Error())
			if pe.Pos >= 0 && pe.Token != "" && len(tt.expr) <= MaxExprLen {
				require.Equal(t, pe.Token, tt.expr[pe.Pos:pe.Pos+len(pe.Token)], "Pos locates Token")
			}
			require.Equal(t, strings.HasPrefix(tt.name, "NeverFires"), errors.Is(err, ErrNeverFires))
		})
	}
}

func TestParseAnchor(t *testing.T) {
	t.Parallel()
	_, err := Parse("@every 1m", Options{})
	require.ErrorIs(t, err, ErrBadAnchor)
	_, err = Parse("@every 1m", Options{Anchor: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.ErrorIs(t, err, ErrBadAnchor)
	var pe *ParseError
	require.False(t, errors.As(err, &pe), "a missing anchor is the caller's bug, not a 400")

	// Other schedules do not need one.
	_, err = Parse("@daily", Options{})
	require.NoError(t, err)
}

func TestNeverFiresIsBoundedByOR(t *testing.T) {
	t.Parallel()
	// With a restricted day-of-week, the OR rule always finds a day.
	s := mustParse(t, "0 0 31 2 1", Options{})
	require.Equal(t,
		[]string{"2027-02-01T00:00:00Z", "2027-02-08T00:00:00Z", "2027-02-15T00:00:00Z", "2027-02-22T00:00:00Z", "2028-02-07T00:00:00Z"},
		utcStrings(s.NextN(mustTime(t, "2026-03-01T00:00:00Z"), 5)))
	// 30 February never comes, 29 February does.
	_, err := Parse("0 0 30 2 *", Options{})
	require.ErrorIs(t, err, ErrNeverFires)
	s = mustParse(t, "0 0 29,30 2 *", Options{})
	require.Equal(t, []string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"},
		utcStrings(s.NextN(mustTime(t, "2026-03-01T00:00:00Z"), 2)))
}

func TestDayOfMonthDayOfWeek(t *testing.T) {
	t.Parallel()
	from := mustTime(t, "2026-06-01T00:00:00Z") // a Monday
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{"BothRestrictedEitherMatches", "0 0 13 * 5", // 13th or any Friday
			[]string{"2026-06-05T00:00:00Z", "2026-06-12T00:00:00Z", "2026-06-13T00:00:00Z", "2026-06-19T00:00:00Z"}},
		{"DayOfWeekStarDayOfMonthDecides", "0 0 13 * *",
			[]string{"2026-06-13T00:00:00Z", "2026-07-13T00:00:00Z", "2026-08-13T00:00:00Z", "2026-09-13T00:00:00Z"}},
		{"DayOfMonthStarDayOfWeekDecides", "0 0 * * 5",
			[]string{"2026-06-05T00:00:00Z", "2026-06-12T00:00:00Z", "2026-06-19T00:00:00Z", "2026-06-26T00:00:00Z"}},
		{"StepIsARestriction", "0 0 */10 * 3", // 1st, 11th, 21st, 31st or Wednesday
			[]string{"2026-06-03T00:00:00Z", "2026-06-10T00:00:00Z", "2026-06-11T00:00:00Z", "2026-06-17T00:00:00Z"}},
		{"StarStepOneIsStar", "0 0 */1 * 3",
			[]string{"2026-06-03T00:00:00Z", "2026-06-10T00:00:00Z", "2026-06-17T00:00:00Z", "2026-06-24T00:00:00Z"}},
		{"SundayIsZero", "0 0 * * 0",
			[]string{"2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z", "2026-06-21T00:00:00Z", "2026-06-28T00:00:00Z"}},
		{"SundayIsSeven", "0 0 * * 7",
			[]string{"2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z", "2026-06-21T00:00:00Z", "2026-06-28T00:00:00Z"}},
		{"RangeThroughSeven", "0 0 * * 6-7",
			[]string{"2026-06-06T00:00:00Z", "2026-06-07T00:00:00Z", "2026-06-13T00:00:00Z", "2026-06-14T00:00:00Z"}},
		{"Names", "0 0 * Jun-jul sat,SUN",
			[]string{"2026-06-06T00:00:00Z", "2026-06-07T00:00:00Z", "2026-06-13T00:00:00Z", "2026-06-14T00:00:00Z"}},
		{"LastDayOfShortMonths", "0 0 31 * *",
			[]string{"2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z", "2026-12-31T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, tt.expr, Options{})
			require.Equal(t, tt.want, utcStrings(s.NextN(from, len(tt.want))))
		})
	}
}

func TestNext(t *testing.T) {
	t.Parallel()

	t.Run("StrictlyAfterWholeSeconds", func(t *testing.T) {
		t.Parallel()
		s := mustParse(t, "*/10 * * * * *", Options{})
		at := mustTime(t, "2026-05-01T10:00:10Z")
		next, ok := s.Next(at)
		require.True(t, ok)
		require.Equal(t, "2026-05-01T10:00:20Z", next.UTC().Format(time.RFC3339))
		next, ok = s.Next(at.Add(-time.Nanosecond))
		require.True(t, ok)
		require.Equal(t, at, next)
		next, ok = s.Next(at.Add(999 * time.Millisecond))
		require.True(t, ok)
		require.Equal(t, "2026-05-01T10:00:20Z", next.UTC().Format(time.RFC3339))
		require.Zero(t, next.Nanosecond())
	})

	t.Run("ResultInScheduleLocation", func(t *testing.T) {
		t.Parallel()
		s := mustParse(t, "0 9 * * *", Options{Timezone: "America/New_York"})
		next, ok := s.Next(mustTime(t, "2027-01-10T00:00:00Z"))
		require.True(t, ok)
		require.Equal(t, "2027-01-10T09:00:00-05:00", next.Format(time.RFC3339))
		require.Equal(t, s.Location(), next.Location())
	})

	t.Run("RangeOfYears", func(t *testing.T) {
		t.Parallel()
		s := mustParse(t, "0 0 1 1 *", Options{})
		next, ok := s.Next(time.Time{})
		require.True(t, ok)
		require.Equal(t, "0002-01-01T00:00:00Z", next.Format(time.RFC3339))
		next, ok = s.Next(time.Date(-500, 1, 1, 0, 0, 0, 0, time.UTC))
		require.True(t, ok)
		require.Equal(t, "0001-01-01T00:00:00Z", next.Format(time.RFC3339))
		next, ok = s.Next(time.Date(9998, 6, 1, 0, 0, 0, 0, time.UTC))
		require.True(t, ok)
		require.Equal(t, "9999-01-01T00:00:00Z", next.Format(time.RFC3339))
		_, ok = s.Next(time.Date(9999, 6, 1, 0, 0, 0, 0, time.UTC))
		require.False(t, ok)
		_, ok = s.Next(time.Unix(1<<62, 0))
		require.False(t, ok)
		require.Len(t, s.NextN(time.Date(9990, 6, 1, 0, 0, 0, 0, time.UTC), 100), 9)
	})

	t.Run("LeapDay", func(t *testing.T) {
		t.Parallel()
		s := mustParse(t, "0 0 29 2 *", Options{Timezone: "America/New_York"})
		require.Equal(t, []string{"2096-02-29T05:00:00Z", "2104-02-29T05:00:00Z", "2108-02-29T05:00:00Z"},
			utcStrings(s.NextN(mustTime(t, "2095-01-01T00:00:00Z"), 3)))
	})

	t.Run("EveryIsALatticeThroughTheAnchor", func(t *testing.T) {
		t.Parallel()
		anchor := mustTime(t, "2026-01-01T12:00:00.750Z") // truncated to the second
		s := mustParse(t, "@every 90s", Options{Timezone: "America/New_York", Anchor: anchor})
		require.Equal(t, 90*time.Second, s.Every())
		require.False(t, s.FixedTime())
		require.Equal(t, []string{"2026-01-01T12:00:00Z", "2026-01-01T12:01:30Z", "2026-01-01T12:03:00Z"},
			utcStrings(s.NextN(mustTime(t, "2026-01-01T11:59:59Z"), 3)))
		require.Equal(t, []string{"2026-01-01T11:57:00Z", "2026-01-01T11:58:30Z"},
			utcStrings(s.NextN(mustTime(t, "2026-01-01T11:56:00Z"), 2)))
		// DST does not exist for it: 90 s apart across the fall-back hour.
		got := s.NextN(mustTime(t, "2026-11-01T05:59:00Z"), 3)
		require.Equal(t, 90*time.Second, got[1].Sub(got[0]))
		require.Equal(t, 90*time.Second, got[2].Sub(got[1]))
	})

	t.Run("NextNBounds", func(t *testing.T) {
		t.Parallel()
		s := mustParse(t, "* * * * * *", Options{})
		require.Nil(t, s.NextN(testAnchor, 0))
		require.Nil(t, s.NextN(testAnchor, -5))
		require.Len(t, s.NextN(testAnchor, 1<<40), MaxNextN)
	})
}

func TestNextRuns(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "0 9 * * 1-5", Options{Timezone: "America/New_York"})
	runs := s.NextRuns(mustTime(t, "2027-01-08T15:00:00Z"), 3) // a Friday, after 09:00 EST
	require.Equal(t, []Run{
		{UTC: "2027-01-11T14:00:00Z", Local: "2027-01-11T09:00:00-05:00"},
		{UTC: "2027-01-12T14:00:00Z", Local: "2027-01-12T09:00:00-05:00"},
		{UTC: "2027-01-13T14:00:00Z", Local: "2027-01-13T09:00:00-05:00"},
	}, runs)
	require.Equal(t, []Run{}, s.NextRuns(testAnchor, 0))

	lh := mustParse(t, "TZ=Australia/Lord_Howe 0 12 * * *", Options{})
	require.Equal(t, []Run{{UTC: "2027-01-10T01:00:00Z", Local: "2027-01-10T12:00:00+11:00"}},
		lh.NextRuns(mustTime(t, "2027-01-10T00:00:00Z"), 1))
}

func TestParseHostileInputIsCheap(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("1,", 500) + "1"
	s := mustParse(t, long+" * * * *", Options{})
	require.Equal(t, "1 * * * *", strings.Replace(s.String(), strings.Repeat("1,", 500), "", 1))

	allSeconds := strings.Repeat("0,", 200) + "59"
	s = mustParse(t, allSeconds+" 0 0 * * *", Options{Timezone: "America/New_York"})
	require.True(t, s.FixedTime())

	start := time.Now()
	for range 1000 {
		_, _ = Parse(strings.Repeat("*/", 200)+" * * * *", Options{})
		_, _ = Parse(strings.Repeat("-", MaxExprLen), Options{})
		_, _ = Parse("TZ="+strings.Repeat("A/", 300)+" * * * * *", Options{})
	}
	require.Less(t, time.Since(start), 5*time.Second)
}

// TestConcurrentUse parses and evaluates schedules from many goroutines at
// once, for the race detector: a Schedule is immutable and the zone cache is
// safe for concurrent use.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	zones := []string{"America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"}
	shared := mustParse(t, "30 2 * * *", Options{Timezone: "America/New_York"})
	want := shared.NextN(testAnchor, 50)
	done := make(chan error)
	for i := range 16 {
		go func() {
			var err error
			defer func() { done <- err }()
			for j := range 50 {
				s, perr := Parse("0 */2 * * *", Options{Timezone: zones[(i+j)%len(zones)]})
				if perr != nil {
					err = perr
					return
				}
				s.NextN(testAnchor, 5)
				if got := shared.NextN(testAnchor, 50); !slices.Equal(got, want) {
					err = errors.New("shared schedule changed")
					return
				}
			}
		}()
	}
	for range 16 {
		require.NoError(t, <-done)
	}
}
