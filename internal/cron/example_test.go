package cron_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/cron"
)

// A fixed-time schedule in New York across the 2026 spring-forward day:
// 02:30 does not exist on 8 March and, with the default dst_gap=shift,
// fires at 03:30 EDT instead.
func Example() {
	s, err := cron.Parse("30 2 * * *", cron.Options{Timezone: "America/New_York"})
	if err != nil {
		panic(err)
	}
	after := time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC)
	for _, t := range s.NextN(after, 3) {
		fmt.Println(t.Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	// Output:
	// 2026-03-07T02:30:00-05:00 2026-03-07T07:30:00Z
	// 2026-03-08T03:30:00-04:00 2026-03-08T07:30:00Z
	// 2026-03-09T02:30:00-04:00 2026-03-09T06:30:00Z
}

// NextRuns gives the next_runs of GET /schedules/:sid (SPEC §6.1).
func ExampleSchedule_NextRuns() {
	s, err := cron.Parse("CRON_TZ=America/New_York 0 9 * * MON-FRI", cron.Options{})
	if err != nil {
		panic(err)
	}
	runs := s.NextRuns(time.Date(2027, 1, 8, 15, 0, 0, 0, time.UTC), 2)
	out, _ := json.Marshal(runs)
	fmt.Println(s.Timezone(), s.String())
	fmt.Println(string(out))
	// Output:
	// America/New_York 0 9 * * 1-5
	// [{"utc":"2027-01-11T14:00:00Z","local":"2027-01-11T09:00:00-05:00"},{"utc":"2027-01-12T14:00:00Z","local":"2027-01-12T09:00:00-05:00"}]
}

// Parse errors name the field and the offending text; an expression that
// can never fire wraps ErrNeverFires.
func ExampleParse_errors() {
	for _, expr := range []string{"61 * * * *", "TZ=0 * * * *", "@every 0s", "0 0 31 2 *"} {
		_, err := cron.Parse(expr, cron.Options{})
		var pe *cron.ParseError
		if errors.As(err, &pe) {
			fmt.Printf("%s [field=%s never=%t]\n", err, pe.Field, errors.Is(err, cron.ErrNeverFires))
		}
	}
	// Output:
	// cron_expr: minute field "61": value 61 out of range 0-59 [field=minute never=false]
	// cron_expr: timezone "0": unknown IANA time zone (names are case-sensitive, e.g. America/New_York) [field=timezone never=false]
	// cron_expr: @every "0s": duration must be at least 1s [field=@every never=false]
	// cron_expr: expression "0 0 31 2 *": never fires: no listed month has any of the listed days of the month [field=expression never=true]
}

// Fall-back day in New York: 01:30 happens twice; dst_fold=both fires at
// both, the default (once) only at the first.
func ExampleOptions_dstFold() {
	after := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, fold := range []cron.DSTFold{cron.DSTFoldOnce, cron.DSTFoldBoth} {
		s, err := cron.Parse("30 1 * * *", cron.Options{Timezone: "America/New_York", DSTFold: fold})
		if err != nil {
			panic(err)
		}
		fmt.Print(fold, ":")
		for _, t := range s.NextN(after, 3) {
			fmt.Print(" ", t.Format("01-02 15:04 -07:00"))
		}
		fmt.Println()
	}
	// Output:
	// once: 11-01 01:30 -04:00 11-02 01:30 -05:00 11-03 01:30 -05:00
	// both: 11-01 01:30 -04:00 11-01 01:30 -05:00 11-02 01:30 -05:00
}
