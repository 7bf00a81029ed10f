package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/cron"
	"github.com/agentplane/agentplane/internal/fault"
)

// Policy values (SPEC §6.3).
const (
	OverlapSkip      = "skip"
	OverlapBufferOne = "buffer_one"
	OverlapBufferAll = "buffer_all"
	OverlapAllowAll  = "allow_all"

	CatchupLatest = "latest"
	CatchupAll    = "all"
	CatchupNone   = "none"
)

// Defaults and bounds.
const (
	DefaultBusyWait    = 2 * time.Minute
	DefaultTimeout     = 5 * time.Minute
	MaxTimeout         = 24 * time.Hour
	DefaultMaxAttempts = 3
	MaxAttempts        = 10
	MaxPromptLen       = 64 << 10
	MaxNameLen         = 200
)

// Duration is a Go duration string in JSON ("90s", "2m").
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`must be a duration string such as "90s" or "2m"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration string such as \"90s\" or \"2m\": %q", s)
	}
	*d = Duration(v)
	return nil
}

// Spec is a schedule's definition: what the operator set (SPEC §6.1–§6.3).
// It is stored as JSON; the engine re-parses CronExpr with it.
type Spec struct {
	CronExpr      string   `json:"cron_expr"`
	Timezone      string   `json:"timezone"`
	Prompt        string   `json:"prompt"`
	DSTGap        string   `json:"dst_gap"`
	DSTFold       string   `json:"dst_fold"`
	OverlapPolicy string   `json:"overlap_policy"`
	CatchupPolicy string   `json:"catchup_policy"`
	CatchupWindow Duration `json:"catchup_window,omitempty"` // 0: unlimited
	// BusyWait is nil until Normalize fills the default; "0s" (no wait) is
	// a value an operator may choose.
	BusyWait       *Duration `json:"busy_wait,omitempty"`
	Timeout        Duration  `json:"timeout"`
	MaxAttempts    int       `json:"max_attempts"`
	Jitter         Duration  `json:"jitter"`
	StartAt        time.Time `json:"start_at,omitzero"`
	EndAt          time.Time `json:"end_at,omitzero"`
	PauseOnFailure bool      `json:"pause_on_failure"`
	// Anchor is the creation instant (@every slots are anchored to it).
	Anchor time.Time `json:"anchor"`
}

// Parse validates the cron fields of the spec and returns the parsed
// schedule. The zone named by a CRON_TZ= prefix is moved into Timezone.
func (s *Spec) Parse() (*cron.Schedule, error) {
	cs, err := cron.Parse(s.CronExpr, cron.Options{Timezone: s.Timezone, DSTGap: cron.DSTGap(s.DSTGap), DSTFold: cron.DSTFold(s.DSTFold), Anchor: s.Anchor})
	if err != nil {
		// The message already starts with the parameter's name.
		field := "cron_expr"
		msg := err.Error()
		var pe *cron.ParseError
		if errors.As(err, &pe) && pe.Param != "" {
			field = pe.Param
			msg = strings.TrimPrefix(msg, pe.Param+": ")
		}
		return nil, fault.Invalid(field, "%s", msg)
	}
	s.Timezone = cs.Timezone()
	return cs, nil
}

// Normalize fills defaults and validates every field except the cron ones
// (Parse does those). Errors name the field.
func (s *Spec) Normalize() error {
	if strings.TrimSpace(s.Prompt) == "" {
		return fault.Invalid("prompt", "must not be empty")
	}
	if len(s.Prompt) > MaxPromptLen {
		return fault.Invalid("prompt", "must be at most %d bytes", MaxPromptLen)
	}
	if s.DSTGap == "" {
		s.DSTGap = string(cron.DSTGapShift)
	}
	if s.DSTGap != string(cron.DSTGapShift) && s.DSTGap != string(cron.DSTGapSkip) {
		return fault.Invalid("dst_gap", `must be "shift" or "skip"`)
	}
	if s.DSTFold == "" {
		s.DSTFold = string(cron.DSTFoldOnce)
	}
	if s.DSTFold != string(cron.DSTFoldOnce) && s.DSTFold != string(cron.DSTFoldBoth) {
		return fault.Invalid("dst_fold", `must be "once" or "both"`)
	}
	if s.OverlapPolicy == "" {
		s.OverlapPolicy = OverlapSkip
	}
	switch s.OverlapPolicy {
	case OverlapSkip:
	case OverlapBufferOne, OverlapBufferAll, OverlapAllowAll:
		return fault.Invalid("overlap_policy", "%q is not supported yet; use \"skip\"", s.OverlapPolicy)
	default:
		return fault.Invalid("overlap_policy", `must be one of "skip", "buffer_one", "buffer_all", "allow_all"`)
	}
	if s.CatchupPolicy == "" {
		s.CatchupPolicy = CatchupLatest
	}
	switch s.CatchupPolicy {
	case CatchupLatest, CatchupNone:
	case CatchupAll:
		// It needs an overlap policy that queues or allows the caught-up
		// slots, and those are not built yet.
		return fault.Invalid("catchup_policy", `"all" is not supported yet (it needs overlap_policy buffer_all or allow_all, which are not supported yet either); use "latest" or "none"`)
	default:
		return fault.Invalid("catchup_policy", `must be one of "latest", "all", "none"`)
	}
	if s.CatchupWindow < 0 {
		return fault.Invalid("catchup_window", "must not be negative")
	}
	if s.BusyWait == nil {
		d := Duration(DefaultBusyWait)
		s.BusyWait = &d
	}
	if *s.BusyWait < 0 || time.Duration(*s.BusyWait) > MaxTimeout {
		return fault.Invalid("busy_wait", "must be between 0s and 24h")
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultTimeout)
	}
	if s.Timeout < Duration(time.Second) || time.Duration(s.Timeout) > MaxTimeout {
		return fault.Invalid("timeout", "must be between 1s and 24h")
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > MaxAttempts {
		return fault.Invalid("max_attempts", "must be between 1 and %d", MaxAttempts)
	}
	if s.Jitter != 0 {
		return fault.Invalid("jitter", "is not supported yet; leave it at 0")
	}
	if !s.StartAt.IsZero() || !s.EndAt.IsZero() {
		return fault.Invalid("start_at", "start_at and end_at are not supported yet")
	}
	if s.PauseOnFailure {
		return fault.Invalid("pause_on_failure", "is not supported yet")
	}
	return nil
}

// State is a schedule's bookkeeping, written by the engine.
type State struct {
	// LastSlot is the newest slot the engine has accounted for (fired,
	// skipped or missed); slots after it are still to come.
	LastSlot            time.Time `json:"last_slot,omitzero"`
	PauseNote           string    `json:"pause_note,omitempty"`
	LastRunAt           time.Time `json:"last_run_at,omitzero"`
	LastStatus          string    `json:"last_status,omitempty"`
	LastError           string    `json:"last_error,omitempty"`
	LastLatenessMS      int64     `json:"last_lateness_ms,omitempty"`
	RunCount            int64     `json:"run_count"`
	SkippedCount        int64     `json:"skipped_count"`
	MissedCount         int64     `json:"missed_count"`
	FailureCount        int64     `json:"failure_count"`
	ConsecutiveFailures int64     `json:"consecutive_failures"`
	EmptyStreak         int64     `json:"empty_streak"`
}

// BusyWaitOrDefault is how long a run may wait for capacity.
func (s Spec) BusyWaitOrDefault() time.Duration {
	if s.BusyWait == nil {
		return DefaultBusyWait
	}
	return time.Duration(*s.BusyWait)
}
