//go:build race

package tensor

// raceEnabled reports a build with the race detector, whose bookkeeping
// allocates and whose slowness changes what tests can afford.
const raceEnabled = true
