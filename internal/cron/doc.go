// Package cron parses cron expressions and computes their fire times in an
// IANA time zone, with the DST rules of SPEC §6.2.
//
// # What it owns
//
// The syntax of a schedule's cron_expr, its validation (with errors that name
// the field and the offending text), the zone it runs in and the answer to
// "when is the next fire after t?". The scheduler builds on Next; the API
// shows NextRuns as next_runs (SPEC §6.1). Policies of SPEC §6.3 (jitter,
// start_at/end_at, overlap …) are not this package's business.
//
// # What it must never do
//
// No I/O: zones come from the IANA database embedded in the package
// (zoneinfo.zip, the Go toolchain's copy), never from the host, so every
// replica computes the same slots. No panics and no unbounded work on any
// input: expressions are capped at MaxExprLen bytes, every search is bounded,
// and the fuzz targets FuzzParse and FuzzNext guard this. It never uses
// time.Date to resolve a local time, because time.Date resolves a
// non-existent local time differently from zone to zone (New York 02:30 →
// 01:30 EST, Lord Howe 02:15 → 02:45, Santiago 00:00 → 23:00 the day
// before); the DST rules below are this package's own code.
//
// # Syntax
//
//	[CRON_TZ=<zone> | TZ=<zone>] [second] minute hour day-of-month month day-of-week
//	[CRON_TZ=<zone> | TZ=<zone>] @yearly | @annually | @monthly | @weekly | @daily | @midnight | @hourly
//	[CRON_TZ=<zone> | TZ=<zone>] @every <duration>
//
// Fields take *, a value, a range lo-hi, a step */n, lo-hi/n or lo/n (lo to
// the end of the field), and comma-separated lists of these. Seconds and
// minutes are 0-59, hours 0-23, days of the month 1-31, months 1-12 or
// JAN-DEC, days of the week 0-7 or SUN-SAT (0 and 7 are both Sunday); names
// are case-insensitive. When both day-of-month and day-of-week are
// restricted (neither is * or */1) a day matching either fires (classic cron
// OR); when one is *, the other alone decides. An expression whose days can
// never match, such as "0 0 31 2 *", is refused with ErrNeverFires.
//
// A zone prefix is stripped into the schedule's zone (Schedule.Timezone); it
// may not contradict Options.Timezone, and an empty or unknown zone is an
// error ("TZ=0" is an error, never a panic).
//
// @every d (a Go duration of whole seconds, at least 1s) fires at every
// instant Anchor + k·d for integer k, where Anchor is the schedule's creation
// instant truncated to the second. It ignores the zone and DST entirely.
//
// # Time and DST
//
// All fire times are whole seconds. A schedule is fixed-time when its second,
// minute and hour fields are each a single value or a list of single values
// ("30 2 * * *", "0 9,17 * * 1-5", @daily); other schedules ("*/15 * * * *",
// "0 * * * *", "0 1-3 * * *", @hourly, @every) are not.
//
// A schedule that is not fixed-time fires at each real instant whose local
// wall time matches: both copies of a repeated hour, nothing in a skipped
// hour. In New York "0 * * * *" fires 23 times on 8 March 2026 and 25 times on
// 1 November 2026.
//
// A fixed-time schedule follows its two policies:
//
//   - dst_gap=shift (default): a wall time that does not exist that day fires
//     once, at the instant it would have had with the UTC offset in force
//     just before the transition. New York, 8 March 2026: "30 2 * * *" fires
//     at 07:30Z (03:30 EDT). Lord Howe (a 30-minute DST), 4 October 2026:
//     "15 2 * * *" fires at 15:45Z on 3 October (02:45 +11:00). Santiago,
//     whose midnight does not exist on 6 September 2026: "0 0 * * *" fires at
//     04:00Z (01:00 -03:00).
//   - dst_gap=skip: no fire that day for that wall time.
//   - dst_fold=once (default): a wall time that occurs twice fires at its
//     first occurrence. New York, 1 November 2026: "30 1 * * *" fires at
//     05:30Z (01:30 EDT) only.
//   - dst_fold=both: at both occurrences (05:30Z and 06:30Z).
//
// Two wall times that resolve to the same instant fire once: with
// "30 2,3 * * *" in New York on 8 March 2026, 02:30 shifted and 03:30 are
// both 07:30Z, which fires once.
//
// # How the search works
//
// Next never scans minute by minute. A calendar walk over bitsets (month →
// day → hour → minute → second) finds the first matching local wall time on a
// clock without DST; a walk over the zone's offset spans (the intervals
// between transitions, from time.Location.ZoneBounds, with its known
// inaccuracies beyond a zone's transition table corrected) maps wall times
// to instants, applying the rules above only near a transition, and jumps
// straight over spans that cannot contain a match. A Next call costs a few
// hundred nanoseconds, however far away the fire is; an accepted expression
// matches at least every 8 years, and every search stops at the end of year
// 9999.
//
// # Zone data
//
// zoneinfo.zip is the Go toolchain's $GOROOT/lib/time/zoneinfo.zip, embedded
// so that slots do not depend on the host's tzdata. When a Go upgrade brings
// new tzdata, TestEmbeddedTZDataIsCurrent fails until the copy is refreshed
// with go generate ./internal/cron.
package cron
