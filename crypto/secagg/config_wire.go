package secagg

import (
	"crypto/ed25519"
	"fmt"
	"math"
)

// configMagic starts an encoded Config (version 1).
const configMagic = "SACF\x01"

// MarshalBinary encodes the Config so the coordinator can send it to every
// participant: magic, round ID, participants (ID and Ed25519 key), k, t,
// minimum survivors, dimension, graph seed and the optional quantizer, all
// big-endian.
func (c *Config) MarshalBinary() ([]byte, error) {
	if len(c.RoundID) == 0 || len(c.RoundID) > MaxRoundIDLen {
		return nil, fmt.Errorf("secagg.Config.MarshalBinary: %w: RoundID of %d bytes", ErrInvalidConfig, len(c.RoundID))
	}
	b := make([]byte, 0, len(configMagic)+1+len(c.RoundID)+4+len(c.Participants)*(4+ed25519.PublicKeySize)+16+32+13)
	b = append(b, configMagic...)
	b = append(b, byte(len(c.RoundID)))
	b = append(b, c.RoundID...)
	b = put32(b, uint32(len(c.Participants)))
	for _, p := range c.Participants {
		if len(p.SigningKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("secagg.Config.MarshalBinary: %w: participant %d has a %d-byte key", ErrInvalidConfig, p.ID, len(p.SigningKey))
		}
		b = put32(b, p.ID)
		b = append(b, p.SigningKey...)
	}
	for _, v := range []int{c.Neighbours, c.Threshold, c.MinSurvivors, c.Dim} {
		if v < 0 || v > math.MaxUint32 {
			return nil, fmt.Errorf("secagg.Config.MarshalBinary: %w: value %d out of range", ErrInvalidConfig, v)
		}
		b = put32(b, uint32(v))
	}
	b = append(b, c.GraphSeed[:]...)
	if c.Quantizer == nil {
		return append(b, 0), nil
	}
	b = append(b, 1)
	b = put32(b, math.Float32bits(c.Quantizer.Clip))
	b = put32(b, uint32(c.Quantizer.Bits))
	return put32(b, c.Quantizer.MaxWeight), nil
}

// UnmarshalBinary decodes a Config written by MarshalBinary. It checks
// sizes before allocating and never panics; the caller still validates the
// result (NewClient does).
func (c *Config) UnmarshalBinary(data []byte) error {
	r := &reader{b: data, name: "Config"}
	if len(data) < len(configMagic) || string(data[:len(configMagic)]) != configMagic {
		r.fail("not an encoded Config")
		return r.err
	}
	r.b = r.b[len(configMagic):]
	var l [1]byte
	r.read(l[:])
	if r.err == nil && (l[0] == 0 || int(l[0]) > MaxRoundIDLen) {
		r.fail("round ID of %d bytes", l[0])
	}
	round := make([]byte, l[0])
	r.read(round)
	n := r.u32()
	const entry = 4 + ed25519.PublicKeySize
	if r.err == nil && (n > MaxParticipants || uint64(n)*entry > uint64(len(r.b))) {
		r.fail("%d participants in %d bytes", n, len(r.b))
	}
	if r.err != nil {
		return r.err
	}
	parts := make([]Participant, n)
	for i := range parts {
		parts[i].ID = r.u32()
		key := make([]byte, ed25519.PublicKeySize)
		r.read(key)
		parts[i].SigningKey = key
	}
	out := Config{RoundID: round, Participants: parts}
	out.Neighbours, out.Threshold, out.MinSurvivors = int(r.u32()), int(r.u32()), int(r.u32())
	out.Dim = int(r.u32())
	r.read(out.GraphSeed[:])
	var q [1]byte
	r.read(q[:])
	switch {
	case r.err != nil:
	case q[0] == 1:
		out.Quantizer = &Quantizer{Clip: math.Float32frombits(r.u32()), Bits: int(r.u32()), MaxWeight: r.u32()}
	case q[0] != 0:
		r.fail("quantizer flag %d", q[0])
	}
	if err := r.done(); err != nil {
		return err
	}
	if uint64(out.Dim) > MaxDim {
		return fmt.Errorf("secagg.Config.UnmarshalBinary: %w: dimension %d above %d", ErrMalformed, out.Dim, MaxDim)
	}
	*c = out
	return nil
}
