//go:build race

package cron

// raceEnabled trims the property tests under the race detector, which slows
// them tenfold while the package's only shared state is the zone cache
// (covered by TestConcurrentUse).
const raceEnabled = true
