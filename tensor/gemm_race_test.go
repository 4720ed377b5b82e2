//go:build race

package tensor

// gemmRaceEnabled: the race detector makes sync.Pool drop items at random,
// so allocation counts are meaningless.
const gemmRaceEnabled = true
