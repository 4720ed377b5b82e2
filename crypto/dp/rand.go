package dp

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
)

// NewCryptoSource returns a ChaCha8 generator seeded with 32 bytes from
// crypto/rand. ChaCha8 is a cryptographically strong generator, so noise drawn
// from it cannot be predicted or removed by whoever sees the noised value.
// This is the source agents should use; tests inject NewSeededSource.
//
// The source is not safe for concurrent use: give each goroutine its own.
func NewCryptoSource() (*rand.ChaCha8, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("dp.NewCryptoSource: %w", err)
	}
	return rand.NewChaCha8(seed), nil
}

// NewSeededSource returns a deterministic ChaCha8 generator expanded from
// seed, for tests and reproducible simulations. Never use it for real noise:
// anyone who knows the seed can subtract the noise.
func NewSeededSource(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}
