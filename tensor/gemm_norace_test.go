//go:build !race

package tensor

const gemmRaceEnabled = false
