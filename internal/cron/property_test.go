package cron

import (
	"archive/zip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// propCase is one expression and policy pair of the property test.
type propCase struct {
	expr string
	gap  DSTGap
	fold DSTFold
}

func propCases() []propCase {
	fixed := []string{
		"30 2 * * *",
		"0 0 * * *",
		"30 1,2,3 * * *",
		"15,45 0,1,2,23 * * *",
		"30 30 2 * * *",
		"0 0 * * 0",
		"0 2 1,15 * 0",
	}
	other := []string{
		"0 * * * *",
		"*/15 * * * *",
		"0 1-3 * * *",
		"0 */2 * * *",
		"5-10 0 * * *",
		"*/20 * 2 * * *",
		"@every 7m",
		"@every 25h",
	}
	var out []propCase
	for _, e := range fixed {
		for _, g := range []DSTGap{DSTGapShift, DSTGapSkip} {
			for _, f := range []DSTFold{DSTFoldOnce, DSTFoldBoth} {
				out = append(out, propCase{e, g, f})
			}
		}
	}
	for _, e := range other {
		out = append(out, propCase{e, "", ""})
	}
	return out
}

// zoneNames lists the zones of the Go toolchain's zoneinfo.zip, which the
// embedded copy mirrors (TestEmbeddedTZDataIsCurrent).
func zoneNames(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip")
	r, err := zip.OpenReader(path)
	if os.IsNotExist(err) {
		t.Skipf("%s is missing", path)
	}
	require.NoError(t, err)
	defer r.Close()
	var names []string
	for _, f := range r.File {
		if !strings.HasSuffix(f.Name, "/") {
			names = append(names, f.Name)
		}
	}
	require.NotEmpty(t, names)
	return names
}

// transitions returns the instants in [from, to) at which loc's offset
// changes.
func transitions(loc *time.Location, from, to time.Time) []int64 {
	var out []int64
	t := from
	for t.Before(to) {
		_, end := t.In(loc).ZoneBounds()
		if !end.IsZero() && !end.After(t) {
			// Go's bounds beyond the transition table can be stale on
			// 31 December of leap years (see spanAt).
			end = t.Truncate(24 * time.Hour).Add(24 * time.Hour)
		}
		if end.IsZero() || !end.Before(to) {
			break
		}
		_, o1 := end.Add(-time.Second).In(loc).Zone()
		_, o2 := end.In(loc).Zone()
		if o1 != o2 {
			out = append(out, end.Unix())
		}
		t = end
	}
	return out
}

// TestNextProperties checks, for every zone of the tzdata and a set of
// expressions, that Next returns whole-second instants strictly after its
// input, in order, each matching the expression or being a documented DST
// shift, and that it returns exactly the fire times of an independent,
// brute-force reading of SPEC §6.2 (oracle) around every transition of
// 2025-2027, around two leap-year ends and in one arbitrary window.
func TestNextProperties(t *testing.T) {
	t.Parallel()
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	if testing.Short() || raceEnabled {
		to = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	runOracle(t, zoneNames(t), propCases(), from, to, true)
}

// TestNextPropertiesHistory does the same around every transition from
// 1900 to 2040, where tzdata holds its oddest data: LMT offsets with
// seconds, double summer time, two-hour jumps, days skipped whole, zones
// whose transition table ends in mid-year. It covers a few expressions;
// set CRON_ORACLE_ALL=1 to run all of propCases (about 100 s on 2 cores).
func TestNextPropertiesHistory(t *testing.T) {
	t.Parallel()
	if testing.Short() || raceEnabled {
		t.Skip("long: about 8 s on 2 cores")
	}
	cases := []propCase{
		{"15,45 0,1,2,23 * * *", DSTGapShift, DSTFoldOnce},
		{"30 1,2,3 * * *", DSTGapSkip, DSTFoldBoth},
		{"*/30 0-3 * * *", "", ""},
	}
	if os.Getenv("CRON_ORACLE_ALL") != "" {
		cases = propCases()
	}
	from := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	runOracle(t, zoneNames(t), cases, from, to, false)
}

// runOracle compares Next with the oracle in windows of ±30 h around every
// transition in [from, to) of every zone (plus, if extra, a few more
// windows), in parallel groups of zones.
func runOracle(t *testing.T, zones []string, cases []propCase, from, to time.Time, extra bool) {
	t.Helper()
	anchor := time.Date(2024, 12, 31, 23, 59, 17, 0, time.UTC)
	const groups = 8
	for g := range groups {
		t.Run("Group"+string(rune('A'+g)), func(t *testing.T) {
			t.Parallel()
			for i := g; i < len(zones); i += groups {
				zone := zones[i]
				loc, err := LoadLocation(zone)
				require.NoError(t, err, zone)
				var windows [][2]int64
				if extra {
					arbitrary := from.Unix() + int64(i)*7919
					windows = append(windows,
						[2]int64{arbitrary, arbitrary + 50*3600},
						// Go's zone bounds are off on 31 December of leap years.
						[2]int64{time.Date(2024, 12, 30, 12, 0, 0, 0, time.UTC).Unix(), time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC).Unix()},
						[2]int64{time.Date(2028, 12, 30, 12, 0, 0, 0, time.UTC).Unix(), time.Date(2029, 1, 1, 12, 0, 0, 0, time.UTC).Unix()},
					)
				}
				for _, tr := range transitions(loc, from, to) {
					windows = append(windows, [2]int64{tr - 30*3600, tr + 30*3600})
				}
				for _, c := range cases {
					s, err := Parse(c.expr, Options{Timezone: zone, DSTGap: c.gap, DSTFold: c.fold, Anchor: anchor})
					require.NoError(t, err)
					for _, w := range windows {
						got := firesIn(t, s, w[0], w[1])
						want := oracle(s, loc, w[0], w[1])
						require.Equal(t, fmtInstants(want, loc), fmtInstants(got, loc),
							"zone %s, %q gap=%s fold=%s, window (%s, %s]", zone, c.expr, c.gap, c.fold,
							time.Unix(w[0], 0).UTC(), time.Unix(w[1], 0).UTC())
					}
				}
			}
		})
	}
}

// firesIn returns the fire instants in (a, b], checking the invariants on
// the way.
func firesIn(t *testing.T, s *Schedule, a, b int64) []int64 {
	t.Helper()
	var out []int64
	prev := time.Unix(a, 0)
	for range 10000 {
		next, ok := s.Next(prev)
		if !ok {
			break
		}
		requireValidFire(t, s, s.loc, prev, next)
		if next.Unix() > b {
			break
		}
		out = append(out, next.Unix())
		prev = next
	}
	return out
}

// requireValidFire checks one result of Next(prev).
func requireValidFire(t *testing.T, s *Schedule, loc *time.Location, prev, next time.Time) {
	t.Helper()
	require.True(t, next.After(prev), "%q in %s: %s is not after %s", s, loc, next, prev)
	require.Zero(t, next.Nanosecond())
	if s.every > 0 {
		require.Zero(t, (next.Unix()-s.anchor)%s.every)
		require.LessOrEqual(t, next.Sub(prev), s.Every())
		return
	}
	if wallMatches(s, next.In(loc)) {
		return
	}
	// Otherwise it must be a shifted gap time: in the first `gap` seconds
	// after a transition, at wall time − offset before it.
	require.True(t, s.fixed && s.gap == DSTGapShift, "%q in %s: %s does not match", s, loc, next.In(loc))
	// (Go's ZoneBounds can report a start before the real transition;
	// spanAt corrects it and TestZoneData checks spanAt.)
	sp := s.spanAt(next.Unix())
	require.Greater(t, sp.start, int64(spanLo), "%q in %s: %s does not match", s, loc, next.In(loc))
	_, before := time.Unix(sp.start-1, 0).In(loc).Zone()
	_, after := next.In(loc).Zone()
	require.Less(t, before, after, "%q in %s: %s is not after a gap", s, loc, next)
	require.Less(t, next.Unix()-sp.start, int64(after-before))
	shifted := next.In(time.FixedZone("before", before))
	require.True(t, wallMatches(s, shifted), "%q in %s: %s is not a shifted match", s, loc, next)
}

// wallMatches reports whether local time lt matches the expression's
// calendar fields, read straight from the bitsets with the OR rule.
func wallMatches(s *Schedule, lt time.Time) bool {
	y, m, d := lt.Date()
	h, mi, sec := lt.Clock()
	_ = y
	if s.month>>uint(m)&1 == 0 || s.hour>>uint(h)&1 == 0 || s.min>>uint(mi)&1 == 0 || s.sec>>uint(sec)&1 == 0 {
		return false
	}
	domOK := s.dom>>uint(d)&1 == 1
	dowOK := s.dow>>uint(lt.Weekday())&1 == 1
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dowOK
	case s.dowStar:
		return domOK
	default:
		return domOK || dowOK
	}
}

// oracle computes the fire instants in (a, b] by brute force, following
// the words of SPEC §6.2 day by day: for each matching local wall time it
// finds every instant showing it by trying each offset seen near it, and
// for a wall time shown by none it finds the transition that skipped it by
// bisection. It uses the time package's own wall clock, not this package's.
func oracle(s *Schedule, loc *time.Location, a, b int64) []int64 {
	if s.every > 0 {
		var out []int64
		k := floorDiv(a-s.anchor, s.every) + 1
		for t := s.anchor + k*s.every; t <= b; t += s.every {
			out = append(out, t)
		}
		return out
	}
	var offsets []int64
	oMin, oMax := int64(1<<62), int64(-1<<62)
	for t := a - 30*3600; t <= b+30*3600; t += 900 {
		_, o := time.Unix(t, 0).In(loc).Zone()
		if !slices.Contains(offsets, int64(o)) {
			offsets = append(offsets, int64(o))
		}
		oMin, oMax = min(oMin, int64(o)), max(oMax, int64(o))
	}
	wallOf := func(t int64) int64 {
		lt := time.Unix(t, 0).In(loc)
		y, m, d := lt.Date()
		h, mi, sec := lt.Clock()
		return time.Date(y, m, d, h, mi, sec, 0, time.UTC).Unix()
	}
	var out []int64
	for day := floorDiv(a+oMin, 86400) - 1; day <= floorDiv(b+oMax, 86400)+1; day++ {
		midnight := time.Unix(day*86400, 0).UTC()
		if !wallMatches(s, midnight.Add(time.Duration(firstBit(uint64(s.hour)))*time.Hour+
			time.Duration(firstBit(s.min))*time.Minute+time.Duration(firstBit(s.sec))*time.Second)) {
			continue // the day does not match
		}
		for _, sod := range timesOfDay(s) {
			w := midnight.Add(time.Duration(sod) * time.Second)
			wall := w.Unix()
			var occ []int64
			for _, o := range offsets {
				if t := wall - o; wallOf(t) == wall && !slices.Contains(occ, t) {
					occ = append(occ, t)
				}
			}
			slices.Sort(occ)
			switch {
			case len(occ) > 0 && (!s.fixed || s.fold == DSTFoldBoth):
				out = append(out, occ...)
			case len(occ) > 0:
				out = append(out, occ[0])
			case s.fixed && s.gap == DSTGapShift:
				lo, hi := wall-oMax, wall-oMin // wallOf(lo) ≤ wall < wallOf(hi)
				for hi-lo > 1 {
					mid := lo + (hi-lo)/2
					if wallOf(mid) > wall {
						hi = mid
					} else {
						lo = mid
					}
				}
				_, before := time.Unix(hi-1, 0).In(loc).Zone()
				out = append(out, wall-int64(before))
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(t int64) bool { return t <= a || t > b })
}

// timesOfDay lists the matching seconds of a day in order.
func timesOfDay(s *Schedule) []int64 {
	var out []int64
	for h := range 24 {
		if s.hour>>uint(h)&1 == 0 {
			continue
		}
		for mi := range 60 {
			if s.min>>uint(mi)&1 == 0 {
				continue
			}
			for sec := range 60 {
				if s.sec>>uint(sec)&1 == 1 {
					out = append(out, int64(h*3600+mi*60+sec))
				}
			}
		}
	}
	return out
}

func firstBit(m uint64) int {
	for i := range 64 {
		if m>>uint(i)&1 == 1 {
			return i
		}
	}
	return -1
}

func fmtInstants(ts []int64, loc *time.Location) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = time.Unix(t, 0).In(loc).Format(time.RFC3339)
	}
	return out
}
