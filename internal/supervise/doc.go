// Package supervise runs every goroutine that outlives a request (scheduler,
// liveness monitor, health sweep, relay, retention …) and tracks whether each
// one is making progress.
//
// A supervised function is restarted after a panic or an error, with
// exponential backoff from 1 s to 30 s that resets after a minute of health;
// a clean return (nil) is final. Each subsystem declares its beat interval and
// beats when it completes a unit of progress — one claim loop, one sweep, one
// relay pass — including an empty one. It is stale when it has not beaten for
// three intervals (counting from its start before the first beat).
//
// It must never beat on a subsystem's behalf: no side timer may make a stuck
// loop look healthy. Beats come only from the loop itself.
package supervise
