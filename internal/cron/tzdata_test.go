package cron

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEmbeddedTZDataIsCurrent fails when the Go toolchain ships tzdata that
// differs from the embedded copy. Zone rules are part of slot identity, so
// the copy is refreshed deliberately: go generate ./internal/cron.
func TestEmbeddedTZDataIsCurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip")
	goroot, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("%s is missing", path)
	}
	require.NoError(t, err)
	require.True(t, bytes.Equal(goroot, zoneinfoZip),
		"internal/cron/zoneinfo.zip differs from %s: run go generate ./internal/cron", path)
}

func TestLoadLocation(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "UTC"} {
		loc, err := LoadLocation(name)
		require.NoError(t, err)
		require.Same(t, time.UTC, loc)
	}
	ny, err := LoadLocation("America/New_York")
	require.NoError(t, err)
	require.Equal(t, "America/New_York", ny.String())
	again, err := LoadLocation("America/New_York")
	require.NoError(t, err)
	require.Same(t, ny, again, "locations are cached")

	for _, name := range []string{"Local", "america/new_york", "/etc/localtime", "../zoneinfo.zip", "0", "America/", "America/New_York\x00", string(make([]byte, 100))} {
		_, err := LoadLocation(name)
		var pe *ParseError
		require.ErrorAs(t, err, &pe, "%q", name)
		require.Equal(t, ParamTimezone, pe.Param)
		require.Equal(t, FieldTimezone, pe.Field)
	}
}

func TestZones(t *testing.T) {
	t.Parallel()
	zones := Zones()
	require.Greater(t, len(zones), 400)
	require.True(t, slices.IsSorted(zones))
	for _, z := range []string{"America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "Asia/Tokyo", "Etc/GMT+5", "UTC"} {
		require.Contains(t, zones, z)
	}
	zones[0] = "changed"
	require.NotEqual(t, "changed", Zones()[0], "Zones returns a copy")
}

// TestZoneData checks, for every zone, the assumptions the span walk makes:
// offsets stay within maxOffset, the transition table's last instant is
// read, and spanAt returns, around every transition from 1850 to 2100 and
// around every year end, an interval that contains its instant and has one
// offset throughout.
func TestZoneData(t *testing.T) {
	t.Parallel()
	zones := Zones()
	const groups = 4
	for g := range groups {
		t.Run("Group"+string(rune('A'+g)), func(t *testing.T) {
			t.Parallel()
			for i := g; i < len(zones); i += groups {
				checkZoneData(t, zones[i])
			}
		})
	}
}

func checkZoneData(t *testing.T, zone string) {
	t.Helper()
	s, err := Parse("0 0 * * *", Options{Timezone: zone})
	require.NoError(t, err)
	loc := s.loc
	from := time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	trs := transitions(loc, from, to)
	if len(trs) > 0 && !s.static {
		require.NotEqual(t, int64(math.MinInt64), s.lastTx, zone)
	}
	var probes []int64
	for _, tr := range trs {
		probes = append(probes, tr-1, tr, tr+1, tr+3600)
	}
	for y := 1970; y <= 2060; y++ {
		ye := time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC).Unix()
		probes = append(probes, ye-1, ye, ye+43200, ye+86399, ye+86400)
	}
	offsetAt := func(t int64) int64 {
		_, o := time.Unix(t, 0).In(loc).Zone()
		return int64(o)
	}
	for _, p := range probes {
		sp := s.spanAt(p)
		require.LessOrEqual(t, sp.start, p, zone)
		require.Greater(t, sp.end, p, zone)
		require.Equal(t, offsetAt(p), sp.off, zone)
		require.LessOrEqual(t, abs(sp.off), int64(maxOffset), zone)
		// One offset throughout (checked near both ends, where errors live).
		for _, q := range []int64{sp.start, sp.start + 1, sp.start + 1800, sp.end - 1801, sp.end - 1} {
			if q >= sp.start && q < sp.end && q > spanLo && q < spanHi {
				require.Equal(t, sp.off, offsetAt(q), "%s: span [%s, %s) around %s", zone,
					time.Unix(sp.start, 0).UTC(), time.Unix(sp.end, 0).UTC(), time.Unix(p, 0).UTC())
			}
		}
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestLastTransitionMalformed(t *testing.T) {
	t.Parallel()
	for _, data := range [][]byte{nil, []byte("TZif"), []byte("nope nope nope nope nope nope nope nope nope nope"), bytes.Repeat([]byte{0xff}, 100),
		append([]byte("TZif2"), bytes.Repeat([]byte{0xff}, 60)...)} {
		require.Equal(t, int64(math.MinInt64), lastTransition(data))
	}
}
