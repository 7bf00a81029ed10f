package agent

import "time"

// SetBeatUnit makes one second of the platform's heartbeat interval last d,
// so that tests see several heartbeats quickly.
func SetBeatUnit(a *Agent, d time.Duration) { a.beatUnit = d }
