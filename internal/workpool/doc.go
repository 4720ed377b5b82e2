// Package workpool runs a numbered batch of work on a bounded number of
// goroutines, stopping at the first error: the one worker pool of the
// research examples (examples/internal/fedsim's users) and of fedge
// simulate's enrollment of virtual agents.
package workpool
