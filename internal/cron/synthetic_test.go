package cron

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syntheticZone builds a TZif (version 2) zone with one transition in 1970
// and the given POSIX TZ rule after it, to test rules no real zone has.
func syntheticZone(t *testing.T, name, rule string) *time.Location {
	t.Helper()
	header := func(timeSize int) []byte {
		h := make([]byte, 44)
		copy(h, "TZif2")
		for i, n := range []uint32{0, 0, 0, 1, 2, 8} { // isut, isstd, leap, time, type, char
			binary.BigEndian.PutUint32(h[20+4*i:], n)
		}
		return h
	}
	body := func(timeSize int) []byte {
		var b []byte
		if timeSize == 4 {
			b = binary.BigEndian.AppendUint32(b, 0)
		} else {
			b = binary.BigEndian.AppendUint64(b, 0)
		}
		b = append(b, 1)                                  // transition to type 1
		b = append(b, 0xff, 0xff, 0xd5, 0xd0, 0, 0)       // type 0: -3h, std, "XST"
		b = append(b, 0xff, 0xff, 0xd5, 0xd0, 0, 0)       // type 1: -3h, std, "XST"
		b = append(b, 'X', 'S', 'T', 0, 'X', 'D', 'T', 0) // abbreviations
		return b
	}
	var data []byte
	data = append(data, header(4)...)
	data = append(data, body(4)...)
	data = append(data, header(8)...)
	data = append(data, body(8)...)
	data = append(data, "\n"+rule+"\n"...)
	loc, err := time.LoadLocationFromTZData(name, data)
	require.NoError(t, err)
	return loc
}

func withZone(t *testing.T, expr string, opts Options, loc *time.Location) *Schedule {
	t.Helper()
	s, err := Parse(expr, opts)
	require.NoError(t, err)
	s.loc, s.zone = loc, loc.String()
	s.static, s.staticOff = isStatic(loc)
	s.lastTx = 0
	return s
}

// TestNextGivesUpOnDSTSkippedForever covers the one way an accepted
// expression can never fire: a fixed-time wall time with dst_gap=skip that
// falls into a gap every year (a rule with a fixed-date transition). Next
// must say so, quickly.
func TestNextGivesUpOnDSTSkippedForever(t *testing.T) {
	t.Parallel()
	// DST starts on day-of-year 60 (1 March in common years) at 02:00.
	loc := syntheticZone(t, "Test/FixedDateGap", "XST3XDT,J60/2,J300/2")
	_, off := time.Date(2027, 3, 1, 3, 30, 0, 0, loc).Zone()
	require.Equal(t, -2*3600, off, "the synthetic rule applies")

	s := withZone(t, "30 2 1 3 *", Options{DSTGap: DSTGapSkip}, loc)
	start := time.Now()
	_, ok := s.Next(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	require.False(t, ok)
	t.Logf("gave up after %s", time.Since(start))
	require.Less(t, time.Since(start), 2*time.Second)

	// Under shift it fires every year at 03:30 -02:00.
	s = withZone(t, "30 2 1 3 *", Options{}, loc)
	require.Equal(t, []string{"2027-03-01T05:30:00Z", "2028-03-01T05:30:00Z"},
		utcStrings(s.NextN(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), 2)))
}
