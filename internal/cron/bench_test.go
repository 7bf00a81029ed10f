package cron

import (
	"testing"
	"time"
)

// BenchmarkNext measures one Next call and the next 10 fire times
// (NextN(…, 10), as next_runs does) for representative expressions,
// starting from instants spread over a year so that zone lookups and
// calendar walks are not all cache-warm.
func BenchmarkNext(b *testing.B) {
	anchor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, expr, zone string
	}{
		{"Every15Minutes", "*/15 * * * *", ""},
		{"Daily0230NewYork", "30 2 * * *", "America/New_York"},
		{"Weekdays9And17", "0 9,17 * * 1-5", ""},
		{"Weekdays9And17NewYork", "0 9,17 * * 1-5", "America/New_York"},
		{"Every10Seconds", "*/10 * * * * *", ""},
		{"Every90s", "@every 90s", ""},
		{"Feb29OrFebMondays", "0 0 29 2 1", ""},
		{"LeapDayOnly", "0 0 29 2 *", ""},
		{"LeapDayOnlyNewYork", "0 0 29 2 *", "America/New_York"},
		{"HourlyLordHowe", "0 * * * *", "Australia/Lord_Howe"},
	}
	starts := make([]time.Time, 64)
	for i := range starts {
		starts[i] = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 137 * time.Hour)
	}
	for _, c := range cases {
		s, err := Parse(c.expr, Options{Timezone: c.zone, Anchor: anchor})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/Next", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.Next(starts[i%len(starts)]); !ok {
					b.Fatal("no fire")
				}
				i++
			}
		})
		b.Run(c.name+"/NextN10", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if len(s.NextN(starts[i%len(starts)], 10)) != 10 {
					b.Fatal("short")
				}
				i++
			}
		})
	}
}

// BenchmarkParse measures Parse of a typical expression with a zone.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("CRON_TZ=America/New_York 0 9,17 * * MON-FRI", Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
