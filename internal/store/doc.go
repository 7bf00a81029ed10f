// Package store defines the one storage interface of agentplane: the domain
// types that cross it, the sentinel errors, and the transaction helper.
//
// It owns the contract, not the SQL: each back end (sqlitestore, pgstore) has
// its own queries and embedded migrations, and both must pass the conformance
// suite in storetest. Only back ends speak SQL; domain packages call this
// interface and never build queries.
//
// The store also owns "now" for anything compared across replicas (leases,
// TTLs, due times): Store.Now is database time in production and the injected
// fake clock in tests. Queries take now as a parameter instead of calling the
// database's now(), so a fake clock drives them too.
package store
