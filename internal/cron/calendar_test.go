package cron

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCivil compares the civil-date arithmetic with the time package over
// more than the whole supported range of years.
func TestCivil(t *testing.T) {
	t.Parallel()
	first := time.Date(-400, 1, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(10400, 12, 31, 0, 0, 0, 0, time.UTC)
	for tm := first; !tm.After(last); tm = tm.Add(24 * time.Hour) {
		days := floorDiv(tm.Unix(), secondsPerDay)
		y, m, d := civil(days)
		if y != int64(tm.Year()) || m != int(tm.Month()) || d != tm.Day() ||
			daysFromCivil(y, m, d) != days || weekday(days) != int(tm.Weekday()) ||
			isLeap(y) != (time.Date(int(y), 12, 31, 0, 0, 0, 0, time.UTC).YearDay() == 366) ||
			daysIn(y, m) != time.Date(int(y), time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
			t.Fatalf("%s: civil gives %d-%d-%d, weekday %d", tm.Format(time.DateOnly), y, m, d, weekday(days))
		}
	}
}

// TestNextWallMatchesBruteForce compares the bitset walk with a
// second-by-second scan of a naive clock for random expressions.
func TestNextWallMatchesBruteForce(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	n := 200
	if testing.Short() {
		n = 50
	}
	for range n {
		expr := randomExpr(rng)
		s, err := Parse(expr, Options{})
		if err != nil {
			continue
		}
		start := time.Date(2020+rng.IntN(10), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), 0, time.UTC).Unix()
		w := start
		for range 5 {
			got, ok := s.nextWall(w)
			require.True(t, ok, expr)
			// Scan at most 3 days by brute force; beyond that, check that
			// nothing in the first 3 days matches.
			limit := min(got, w+3*secondsPerDay)
			for x := w; x < limit; x++ {
				if s.sec>>uint(x%60)&1 == 0 || s.min>>uint(x/60%60)&1 == 0 || s.hour>>uint(x/3600%24)&1 == 0 {
					continue
				}
				require.False(t, wallMatches(s, time.Unix(x, 0).UTC()), "%q: %s matches before %s", expr, time.Unix(x, 0).UTC(), time.Unix(got, 0).UTC())
			}
			require.True(t, wallMatches(s, time.Unix(got, 0).UTC()), "%q: %s", expr, time.Unix(got, 0).UTC())
			w = got + 1
		}
	}
}

// randomExpr builds a random, mostly valid expression.
func randomExpr(rng *rand.Rand) string {
	item := func(lo, hi int) string {
		switch rng.IntN(6) {
		case 0:
			return "*"
		case 1:
			return "*/" + strconv.Itoa(1+rng.IntN(hi-lo+1))
		case 2:
			a := lo + rng.IntN(hi-lo+1)
			b := a + rng.IntN(hi-a+1)
			return strconv.Itoa(a) + "-" + strconv.Itoa(b)
		case 3:
			a := lo + rng.IntN(hi-lo+1)
			b := a + rng.IntN(hi-a+1)
			return strconv.Itoa(a) + "-" + strconv.Itoa(b) + "/" + strconv.Itoa(1+rng.IntN(5))
		default:
			return strconv.Itoa(lo + rng.IntN(hi-lo+1))
		}
	}
	field := func(lo, hi int) string {
		parts := []string{item(lo, hi)}
		for rng.IntN(3) == 0 {
			parts = append(parts, item(lo, hi))
		}
		return strings.Join(parts, ",")
	}
	f := []string{field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 7)}
	if rng.IntN(3) == 0 {
		f = append([]string{field(0, 59)}, f...)
	}
	return strings.Join(f, " ")
}
