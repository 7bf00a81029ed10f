package cron

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The seed corpora live in testdata/fuzz/FuzzParse and testdata/fuzz/FuzzNext
// and run as ordinary tests with go test. To fuzz:
//
//	go test -run='^$' -fuzz=FuzzParse -fuzztime=60s ./internal/cron
//	go test -run='^$' -fuzz=FuzzNext -fuzztime=60s ./internal/cron

// maxErrorLen bounds an error message whatever the input.
const maxErrorLen = 400

// FuzzParse checks that Parse never panics, reports every refusal as a
// bounded *ParseError, and that an accepted expression's normalized form
// parses to the same schedule.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{"30 2 * * *", "TZ=0 * * * * *", "@every 90s", "CRON_TZ=America/New_York 0 9 * * MON-FRI"} {
		f.Add(seed, "", "", "")
	}
	f.Fuzz(func(t *testing.T, expr, zone, gap, fold string) {
		opts := Options{Timezone: zone, DSTGap: DSTGap(gap), DSTFold: DSTFold(fold), Anchor: testAnchor}
		s, err := Parse(expr, opts)
		if err != nil {
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "%q: %v is not a *ParseError", expr, err)
			require.NotEmpty(t, pe.Param)
			require.NotEmpty(t, pe.Reason)
			require.LessOrEqual(t, len(err.Error()), maxErrorLen)
			if pe.Pos >= 0 {
				require.LessOrEqual(t, pe.Pos+len(pe.Token), len(expr))
				require.Equal(t, pe.Token, expr[pe.Pos:pe.Pos+len(pe.Token)], "Pos locates Token")
			}
			return
		}
		require.LessOrEqual(t, len(s.String()), 4*MaxExprLen)
		opts.Timezone = s.Timezone()
		again, err := Parse(s.String(), opts)
		require.NoError(t, err, "normalized %q of %q", s.String(), expr)
		require.Equal(t, s.String(), again.String())
		require.Equal(t, s.FixedTime(), again.FixedTime())
		from := time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)
		require.Equal(t, s.NextN(from, 3), again.NextN(from, 3))
	})
}

// FuzzNext checks Next on any parsable expression, in any zone, after any
// instant: results are strictly increasing, whole seconds, match the
// expression (or are a documented DST shift), come fast, and, within a
// 36-hour window, are exactly the fire times of the brute-force oracle.
func FuzzNext(f *testing.F) {
	f.Add("30 2 * * *", uint16(0), int64(1772928000), false, false)
	zones := Zones()
	f.Fuzz(func(t *testing.T, expr string, zoneIdx uint16, after int64, skip, both bool) {
		opts := Options{Timezone: zones[int(zoneIdx)%len(zones)], DSTGap: DSTGapShift, DSTFold: DSTFoldOnce, Anchor: testAnchor}
		if skip {
			opts.DSTGap = DSTGapSkip
		}
		if both {
			opts.DSTFold = DSTFoldBoth
		}
		s, err := Parse(expr, opts)
		if err != nil {
			return
		}
		start := time.Now()
		prev := time.Unix(after, 0)
		fires := s.NextN(prev, 5)
		require.Less(t, time.Since(start), 2*time.Second, "%q after %d", expr, after)
		for _, next := range fires {
			requireValidFire(t, s, s.loc, prev, next)
			prev = next
		}
		if len(fires) == 0 {
			// Parse refuses expressions that never fire; only the end of
			// year 9999 can leave none.
			require.Greater(t, after, time.Date(9990, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), "%q after %d", expr, after)
		}

		// Differential check against the oracle where it is cheap and its
		// offset sampling holds.
		lo, hi := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		if after < lo || after > hi || (s.every == 0 && len(timesOfDay(s)) > 200) || (s.every > 0 && s.every < 600) {
			return
		}
		window := after + 36*3600
		require.Equal(t, fmtInstants(oracle(s, s.loc, after, window), s.loc), fmtInstants(firesIn(t, s, after, window), s.loc),
			"%q in %s after %s", expr, s.loc, time.Unix(after, 0).UTC())
	})
}
