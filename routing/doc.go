// Package routing holds the pure decisions of smtpmux: which providers a
// credential may use, which of those are eligible right now, the weighted pick
// among them, how an upstream failure is classified, and when a message is
// retried. It performs no I/O and imports nothing of the project, so every
// rule can be tested with plain tables and fuzzed.
package routing
