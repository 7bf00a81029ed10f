package cron

import (
	"archive/zip"
	"bytes"
	_ "embed" // zoneinfo.zip
	"encoding/binary"
	"io"
	"math"
	"sort"
	"sync"
	"time"
)

// zoneinfo.zip is a copy of the Go toolchain's $GOROOT/lib/time/zoneinfo.zip
// (the IANA database compiled by the Go project). Schedules read zones only
// from this copy, never from the host, so that every replica running the same
// binary computes the same slots whatever tzdata the host has installed.
// TestEmbeddedTZDataIsCurrent fails when the toolchain ships newer data.
//
//go:generate cp $GOROOT/lib/time/zoneinfo.zip zoneinfo.zip
//go:embed zoneinfo.zip
var zoneinfoZip []byte

// maxZoneNameLen bounds zone names; the longest IANA name is 32 bytes.
const maxZoneNameLen = 64

var tzdb struct {
	once  sync.Once
	files map[string]*zip.File
	names []string
	err   error
	locs  sync.Map // name → *time.Location
	last  sync.Map // *time.Location → int64, its last table transition
}

func loadIndex() {
	r, err := zip.NewReader(bytes.NewReader(zoneinfoZip), int64(len(zoneinfoZip)))
	if err != nil {
		tzdb.err = err
		return
	}
	tzdb.files = make(map[string]*zip.File, len(r.File))
	for _, f := range r.File {
		if f.FileInfo().IsDir() {
			continue
		}
		tzdb.files[f.Name] = f
		tzdb.names = append(tzdb.names, f.Name)
	}
	sort.Strings(tzdb.names)
}

// Zones returns the names of all zones in the embedded IANA database, sorted.
func Zones() []string {
	tzdb.once.Do(loadIndex)
	return append([]string(nil), tzdb.names...)
}

// LoadLocation returns the zone with the given IANA name (case-sensitive, e.g.
// "America/New_York") from the tzdata embedded in this package. The empty
// name and "UTC" give time.UTC. "Local" is refused: the server's own zone
// must never matter. An unknown name gives a *ParseError for parameter
// "timezone".
func LoadLocation(name string) (*time.Location, error) {
	return loadLocation(name, ParamTimezone, -1)
}

func loadLocation(name, param string, pos int) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if v, ok := tzdb.locs.Load(name); ok {
		return v.(*time.Location), nil
	}
	bad := func(reason string) error {
		return &ParseError{Param: param, Field: FieldTimezone, Token: name, Pos: pos, Reason: reason}
	}
	if len(name) > maxZoneNameLen {
		return nil, bad("unknown IANA time zone")
	}
	tzdb.once.Do(loadIndex)
	if tzdb.err != nil {
		return nil, bad("embedded tzdata unreadable: " + tzdb.err.Error())
	}
	f, ok := tzdb.files[name]
	if !ok {
		return nil, bad("unknown IANA time zone (names are case-sensitive, e.g. America/New_York)")
	}
	rc, err := f.Open()
	if err != nil {
		return nil, bad("embedded tzdata unreadable: " + err.Error())
	}
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	_ = rc.Close()
	if err != nil {
		return nil, bad("embedded tzdata unreadable: " + err.Error())
	}
	loc, err := time.LoadLocationFromTZData(name, data)
	if err != nil {
		return nil, bad("not a valid zone: " + err.Error())
	}
	v, loaded := tzdb.locs.LoadOrStore(name, loc)
	if !loaded {
		tzdb.last.Store(loc, lastTransition(data))
	}
	return v.(*time.Location), nil
}

// lastTransitionOf returns the last instant of loc's transition table, after
// which the zone's POSIX TZ rule applies, or math.MinInt64 if unknown.
func lastTransitionOf(loc *time.Location) int64 {
	if v, ok := tzdb.last.Load(loc); ok {
		return v.(int64)
	}
	return math.MinInt64
}

// lastTransition reads the last transition time of a TZif file (RFC 8536),
// preferring the 64-bit data of version 2 and later; math.MinInt64 if there
// is none or the data is malformed.
func lastTransition(data []byte) int64 {
	const headerLen = 44
	be32 := func(b []byte) int64 { return int64(int32(binary.BigEndian.Uint32(b))) }
	if len(data) < headerLen || string(data[:4]) != "TZif" {
		return math.MinInt64
	}
	counts := func(h []byte) (isut, isstd, leap, time, typ, char int) {
		c := func(i int) int { return int(binary.BigEndian.Uint32(h[20+4*i:])) }
		return c(0), c(1), c(2), c(3), c(4), c(5)
	}
	isut, isstd, leap, n, typ, char := counts(data)
	if data[4] >= '2' {
		v1 := n*4 + n + typ*6 + char + leap*8 + isstd + isut
		if v1 < 0 || len(data) < headerLen+v1+headerLen {
			return math.MinInt64
		}
		h := data[headerLen+v1:]
		if string(h[:4]) != "TZif" {
			return math.MinInt64
		}
		_, _, _, n, _, _ = counts(h)
		if n <= 0 || len(h) < headerLen+n*8 {
			return math.MinInt64
		}
		return int64(binary.BigEndian.Uint64(h[headerLen+(n-1)*8:]))
	}
	if n <= 0 || len(data) < headerLen+n*4 {
		return math.MinInt64
	}
	return be32(data[headerLen+(n-1)*4:])
}
