package cron

import (
	"time"
)

// DSTGap is the policy for a fixed-time schedule's wall time that does not
// exist on a spring-forward day (SPEC §6.2 dst_gap).
type DSTGap string

// DST gap policies.
const (
	// DSTGapShift fires once, at the instant the wall time would have had
	// with the UTC offset in force just before the transition (the default).
	DSTGapShift DSTGap = "shift"
	// DSTGapSkip does not fire that day.
	DSTGapSkip DSTGap = "skip"
)

// DSTFold is the policy for a fixed-time schedule's wall time that occurs
// twice on a fall-back day (SPEC §6.2 dst_fold).
type DSTFold string

// DST fold policies.
const (
	// DSTFoldOnce fires at the first occurrence only (the default).
	DSTFoldOnce DSTFold = "once"
	// DSTFoldBoth fires at both occurrences.
	DSTFoldBoth DSTFold = "both"
)

const (
	// MaxExprLen is the longest expression Parse accepts, in bytes.
	MaxExprLen = 1024
	// MaxNextN is the most fire times NextN and NextRuns return at once.
	MaxNextN = 1000
)

// Options carries the schedule fields that Parse needs besides the
// expression.
type Options struct {
	// Timezone is the IANA zone name from the API's timezone field. Pass ""
	// when the request did not send one: the zone is then UTC unless a
	// CRON_TZ=/TZ= prefix names one. A prefix naming a different zone than a
	// non-empty Timezone is an error.
	Timezone string
	// DSTGap is the gap policy for fixed-time schedules; "" means shift.
	DSTGap DSTGap
	// DSTFold is the fold policy for fixed-time schedules; "" means once.
	DSTFold DSTFold
	// Anchor is the schedule's creation instant. @every schedules fire at
	// Anchor + k·d (truncated to the second); it is required for them and
	// ignored otherwise.
	Anchor time.Time
}

// Schedule is a parsed, validated cron expression bound to a time zone. It is
// immutable and safe for concurrent use.
type Schedule struct {
	expr string // normalized, without zone prefix
	zone string
	loc  *time.Location
	// static zones have one offset for all time (UTC, Etc/GMT+5 …).
	static    bool
	staticOff int64
	lastTx    int64 // last instant of the zone's transition table

	every  int64 // @every period in seconds; 0 for calendar schedules
	anchor int64

	sec, min         uint64 // bits 0..59
	hour             uint32 // bits 0..23
	dom              uint32 // bits 1..31
	month            uint16 // bits 1..12
	dow              uint8  // bits 0..6 (7 folded into 0)
	dowStar, domStar bool
	// dowDays[w] has bit d set when day d of a month whose first day is
	// weekday w falls on a day of the week the expression lists.
	dowDays [7]uint32

	fixed bool
	gap   DSTGap
	fold  DSTFold
}

// Location returns the schedule's time zone: the CRON_TZ=/TZ= prefix's,
// otherwise Options.Timezone's, otherwise time.UTC.
func (s *Schedule) Location() *time.Location { return s.loc }

// Timezone returns the IANA name of the schedule's zone ("UTC" by default),
// which is what the API stores in the schedule's timezone field.
func (s *Schedule) Timezone() string { return s.zone }

// FixedTime reports whether the schedule is fixed-time in the sense of SPEC
// §6.2: its second, minute and hour fields are each a single value or a list
// of single values (an item that denotes one value, like 5-5, counts as a
// single value; * never does). Only fixed-time schedules obey dst_gap and
// dst_fold.
func (s *Schedule) FixedTime() bool { return s.fixed }

// Every returns the period of an @every schedule, or 0 for other schedules.
func (s *Schedule) Every() time.Duration { return time.Duration(s.every) * time.Second }

// String returns the normalized expression without its zone prefix: single
// spaces, numbers without leading zeros, month and weekday names as numbers,
// descriptors in lower case (@annually as @yearly, @midnight as @daily) and
// @every durations in Go's canonical form (@every 1m30s).
func (s *Schedule) String() string { return s.expr }

// Next returns the first fire time strictly after after, in the schedule's
// location, with zero nanoseconds. It returns false when there is none
// before the end of year 9999. It never loops: its cost is bounded by a
// calendar walk of at most a few years and the zone transitions near the
// result.
func (s *Schedule) Next(after time.Time) (time.Time, bool) {
	t, ok := s.next(after.Unix())
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(t, 0).In(s.loc), true
}

// next returns the first fire instant (Unix seconds) strictly after the
// whole second containing after.
func (s *Schedule) next(after int64) (int64, bool) {
	if after >= maxInstant {
		return 0, false
	}
	lo := max(after+1, minInstant)
	if s.every > 0 {
		k := floorDiv(lo-s.anchor-1, s.every) + 1
		t := s.anchor + k*s.every
		if t > maxInstant {
			return 0, false
		}
		return t, true
	}
	return s.nextCalendar(lo)
}

// NextN returns up to n successive fire times strictly after after (fewer
// when the schedule ends before year 9999). n is capped at MaxNextN.
func (s *Schedule) NextN(after time.Time, n int) []time.Time {
	n = min(n, MaxNextN)
	if n <= 0 {
		return nil
	}
	out := make([]time.Time, 0, n)
	t := after.Unix()
	for len(out) < n {
		next, ok := s.next(t)
		if !ok {
			break
		}
		out = append(out, time.Unix(next, 0).In(s.loc))
		t = next
	}
	return out
}

// Run is one upcoming fire time as the API shows it in next_runs (SPEC §6.1).
type Run struct {
	// UTC is the instant in RFC 3339 UTC, e.g. "2027-01-10T14:00:00Z".
	UTC string `json:"utc"`
	// Local is the same instant as local time with its offset in the
	// schedule's zone, e.g. "2027-01-10T09:00:00-05:00".
	Local string `json:"local"`
}

// NextRuns returns the next n fire times strictly after after in the
// next_runs format. n is capped at MaxNextN.
func (s *Schedule) NextRuns(after time.Time, n int) []Run {
	times := s.NextN(after, n)
	runs := make([]Run, len(times))
	for i, t := range times {
		runs[i] = Run{
			UTC:   t.UTC().Format(time.RFC3339),
			Local: t.In(s.loc).Format(time.RFC3339),
		}
	}
	return runs
}
