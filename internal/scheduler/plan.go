package scheduler

import (
	"time"

	"github.com/agentplane/agentplane/internal/cron"
	"github.com/agentplane/agentplane/internal/store"
)

// OnTimeGrace is how late a slot may be found and still count as on time
// (trigger "schedule" rather than "catchup"; with catchup_policy "none",
// the only slot that still runs).
const OnTimeGrace = 30 * time.Second

// maxEnumerate bounds the slots one plan looks at: a per-second schedule
// after a day of downtime has 86,400 slots; they are accounted for over
// several claims instead of one unbounded one.
const maxEnumerate = 10_000

// Missed-slot reasons.
const (
	ReasonSuperseded = "missed: a later slot was due (catchup_policy latest runs only the most recent)"
	ReasonNoCatchup  = "missed: catchup_policy none runs no late slot"
	ReasonWindow     = "missed: older than catchup_window"
	ReasonBacklog    = "missed: part of a backlog too long to run"
)

// Fire is a slot that is to run (through the overlap policy).
type Fire struct {
	Slot    time.Time
	Trigger string
}

// MissedRange is a contiguous run of slots that will not run, recorded as
// one history row.
type MissedRange struct {
	First, Last time.Time
	Count       int
	Reason      string
}

// Plan is what to do with the slots that came due since the last one
// accounted for.
type Plan struct {
	Fires  []Fire
	Missed []MissedRange
	// LastSlot is the newest slot now accounted for.
	LastSlot time.Time
	// Next is when the schedule is next due (zero: never again).
	Next time.Time
}

// PlanDue decides, as a pure function of the parsed schedule, its spec, the
// last slot accounted for and now, which due slots fire and which are
// missed (SPEC §6.3 catch-up). Overlap is the engine's business: it needs
// the runs in flight.
func PlanDue(cs *cron.Schedule, spec Spec, last, now time.Time) Plan {
	var due []time.Time
	t := last
	capped := false
	for {
		n, ok := cs.Next(t)
		if !ok || n.After(now) {
			break
		}
		if len(due) == maxEnumerate {
			capped = true
			break
		}
		due = append(due, n.UTC())
		t = n
	}
	p := Plan{LastSlot: last}
	if len(due) == 0 {
		p.Next = nextAfter(cs, last)
		return p
	}
	p.LastSlot = due[len(due)-1]
	if capped {
		// More slots follow these: none of these is the most recent, so
		// under every policy they are missed. The rest comes next claim.
		p.Missed = appendMissed(p.Missed, due, ReasonBacklog)
		p.Next = nextAfter(cs, p.LastSlot)
		return p
	}
	window := time.Duration(spec.CatchupWindow)
	inWindow := func(s time.Time) bool { return window <= 0 || now.Sub(s) <= window }
	onTime := func(s time.Time) bool { return now.Sub(s) <= OnTimeGrace }
	trigger := func(s time.Time) string {
		if onTime(s) {
			return store.TriggerSchedule
		}
		return store.TriggerCatchup
	}

	var runnable, old []time.Time // old: outside the window
	for _, s := range due {
		if inWindow(s) {
			runnable = append(runnable, s)
		} else {
			old = append(old, s)
		}
	}
	p.Missed = appendMissed(p.Missed, old, ReasonWindow)
	switch spec.CatchupPolicy {
	case CatchupAll:
		for _, s := range runnable {
			p.Fires = append(p.Fires, Fire{Slot: s, Trigger: trigger(s)})
		}
	case CatchupNone:
		if n := len(runnable); n > 0 && onTime(runnable[n-1]) {
			p.Missed = appendMissed(p.Missed, runnable[:n-1], ReasonNoCatchup)
			p.Fires = append(p.Fires, Fire{Slot: runnable[n-1], Trigger: store.TriggerSchedule})
		} else {
			p.Missed = appendMissed(p.Missed, runnable, ReasonNoCatchup)
		}
	default: // latest
		if n := len(runnable); n > 0 {
			p.Missed = appendMissed(p.Missed, runnable[:n-1], ReasonSuperseded)
			p.Fires = append(p.Fires, Fire{Slot: runnable[n-1], Trigger: trigger(runnable[n-1])})
		}
	}
	p.Next = nextAfter(cs, p.LastSlot)
	return p
}

// appendMissed records slots (consecutive slots of the schedule) as one range.
func appendMissed(ms []MissedRange, slots []time.Time, reason string) []MissedRange {
	if len(slots) == 0 {
		return ms
	}
	return append(ms, MissedRange{First: slots[0], Last: slots[len(slots)-1], Count: len(slots), Reason: reason})
}

func nextAfter(cs *cron.Schedule, t time.Time) time.Time {
	n, ok := cs.Next(t)
	if !ok {
		return time.Time{}
	}
	return n.UTC()
}
