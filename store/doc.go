// Package store is smtpmux's only persistence: one bbolt file holding teams,
// credentials (hashes only), providers (secrets sealed), the message queue
// (records, bodies, the due index, attempts) and their indexes.
//
// Every write goes through one committer goroutine that folds concurrent
// writes into a single transaction, so N sessions waiting for durability
// share one fsync. A write function may therefore run more than once (when a
// sibling in its batch fails, the batch is re-run without it) and must be
// idempotent: read, mutate, put.
//
// The package imports nothing of the project.
package store
