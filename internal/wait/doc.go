// Package wait holds fedge's one poll-until helper: Until calls a condition
// until it holds, a timeout passes or a context ends. The demo (`fedge dev`),
// the examples and, through internal/testutil.WaitFor, the tests all poll
// with it, so that none of them synchronises by sleeping a guessed time.
// Sleep is the context-aware pause of retry loops (the agent's
// reconnects, the admin client's retries).
package wait
