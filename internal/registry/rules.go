package registry

import (
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
)

// Degraded reasons (SPEC §5).
const (
	ReasonErrorRate       = "error_rate"
	ReasonCardUnreachable = "agent_card_unreachable"
)

// Error-rate hysteresis: degraded at or above the high mark, healthy again
// only below the low mark.
const (
	errorRateHigh = 0.5
	errorRateLow  = 0.1
	// ProbeFailuresToDegrade consecutive failed card probes add a reason.
	ProbeFailuresToDegrade = 3
)

// withReason returns the set rs with r added or removed (sorted, no dups).
func withReason(rs []string, r string, present bool) []string {
	out := slices.DeleteFunc(slices.Clone(rs), func(x string) bool { return x == r })
	if present {
		out = append(out, r)
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

// errorRateReason applies the hysteresis to the reason set.
func errorRateReason(rs []string, rate float64) []string {
	switch {
	case rate >= errorRateHigh:
		return withReason(rs, ReasonErrorRate, true)
	case rate < errorRateLow:
		return withReason(rs, ReasonErrorRate, false)
	}
	return rs
}

// liveStatus is the status of an agent that is reachable: online, or degraded
// while any reason holds.
func liveStatus(rs []string) string {
	if len(rs) > 0 {
		return store.StatusDegraded
	}
	return store.StatusOnline
}

// transitionEvent names the event of a status change, "" when none.
func transitionEvent(from, to string, fromReasons, toReasons []string) string {
	if from == to {
		if to == store.StatusDegraded && !slices.Equal(fromReasons, toReasons) {
			return "WORKSPACE_DEGRADED" // still degraded, for other reasons
		}
		return ""
	}
	switch to {
	case store.StatusOnline:
		return "WORKSPACE_ONLINE"
	case store.StatusDegraded:
		return "WORKSPACE_DEGRADED"
	case store.StatusOffline:
		if from == store.StatusPaused {
			return "WORKSPACE_RESUMED"
		}
		return "WORKSPACE_OFFLINE"
	case store.StatusPaused:
		return "WORKSPACE_PAUSED"
	case store.StatusRemoved:
		return "WORKSPACE_REMOVED"
	}
	return ""
}

// Limits on free-text fields.
const (
	maxNameLen        = 255
	maxRoleLen        = 4000
	maxCurrentTaskLen = 1000
	maxSampleErrorLen = 2000
	maxCardBytes      = 256 << 10
	maxConcurrency    = 1000
	maxActiveTasks    = 1_000_000
)

// validName checks a workspace name: present, short, one line, printable.
func validName(field, s string) error {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return fault.Invalid(field, "must not be empty")
	case utf8.RuneCountInString(s) > maxNameLen:
		return fault.Invalid(field, "must be at most %d characters", maxNameLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fault.Invalid(field, "must be one line without control characters")
	}
	return nil
}

// validText checks a free-text field: bounded, no NUL or other control
// characters except newlines and tabs.
func validText(field, s string, max int) error {
	if utf8.RuneCountInString(s) > max {
		return fault.Invalid(field, "must be at most %d characters", max)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' }) {
		return fault.Invalid(field, "must not contain control characters")
	}
	return nil
}

// truncate caps s at max runes (for agent-reported strings we keep, not reject).
func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max])
}

// validRate checks an error rate in [0, 1].
func validRate(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1 {
		return fault.Invalid(field, "must be a number between 0 and 1")
	}
	return nil
}

// canTalk is the hierarchy rule of SPEC §7.2 over a parent map: a workspace
// may reach itself, its ancestors and descendants (parent and children
// included) and its siblings; root workspaces are not siblings.
func canTalk(parent map[string]string, caller, target string) bool {
	if caller == target {
		return true
	}
	if _, ok := parent[caller]; !ok {
		return false
	}
	if _, ok := parent[target]; !ok {
		return false
	}
	if p := parent[caller]; p != "" && p == parent[target] {
		return true
	}
	return isAncestor(parent, caller, target) || isAncestor(parent, target, caller)
}

// isAncestor reports whether a is a proper ancestor of d. The walk is bounded
// by the map size, so a corrupt cycle cannot loop forever.
func isAncestor(parent map[string]string, a, d string) bool {
	cur := parent[d]
	for i := 0; cur != "" && i <= len(parent); i++ {
		if cur == a {
			return true
		}
		cur = parent[cur]
	}
	return false
}

// descendants returns every descendant of id (not id itself), parents before
// children.
func descendants(nodes []store.HierarchyNode, id string) []string {
	children := map[string][]string{}
	for _, n := range nodes {
		if n.ParentID != "" {
			children[n.ParentID] = append(children[n.ParentID], n.ID)
		}
	}
	var out []string
	seen := map[string]bool{id: true}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}
