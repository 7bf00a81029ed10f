package store

import "time"

// Lease purposes: who holds a capacity slot.
const (
	LeaseA2A  = "a2a"  // a gateway call (HTTP route or gateway.Send)
	LeaseCron = "cron" // a scheduler run
)

// Lease is a capacity lease on one of a workspace's max_concurrent_tasks
// slots (SPEC §7.3). It is stored so that it holds across replicas, renewed
// by its holder while the work runs, and free again once it expires (judged
// by store time) if the holder dies.
type Lease struct {
	// ID identifies this grant; release deletes by id so a holder whose lease
	// expired and was taken over never frees the new holder's slot.
	ID          string
	WorkspaceID string
	// Slot is 0 … max_concurrent_tasks-1, chosen by AcquireLease.
	Slot int
	// Holder names the replica that holds the lease (renewals are per holder).
	Holder  string
	Purpose string
	// Ref names the work (a JSON-RPC id, a run id); for operators only.
	Ref        string
	AcquiredAt time.Time
	ExpiresAt  time.Time
}
