package protocol

import (
	"bytes"
	"encoding"
	"fmt"
)

// The SecAgg+ stage messages. Each carries the round ID and an opaque
// payload produced and parsed by crypto/secagg (its MarshalBinary); this
// package only frames and bounds it. A *Relay type is the coordinator's
// message of the same stage.

// AdvertiseKeys carries an agent's public keys (stage 0, agent to coordinator).
type AdvertiseKeys struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*AdvertiseKeys) Type() MsgType { return TypeAdvertiseKeys }

func (m *AdvertiseKeys) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *AdvertiseKeys) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// AdvertiseKeysRelay carries the advertised keys of an agent's neighbours (stage 0, coordinator to agent).
type AdvertiseKeysRelay struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*AdvertiseKeysRelay) Type() MsgType { return TypeAdvertiseKeysRelay }

func (m *AdvertiseKeysRelay) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *AdvertiseKeysRelay) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// ShareKeys carries an agent's encrypted secret shares for its neighbours (stage 1, agent to coordinator).
type ShareKeys struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*ShareKeys) Type() MsgType { return TypeShareKeys }

func (m *ShareKeys) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *ShareKeys) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// ShareKeysRelay carries the encrypted shares addressed to one agent (stage 1, coordinator to agent).
type ShareKeysRelay struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*ShareKeysRelay) Type() MsgType { return TypeShareKeysRelay }

func (m *ShareKeysRelay) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *ShareKeysRelay) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// MaskedInput carries an agent's small masked input sent inline (stage 2, agent to coordinator); large vectors use MaskedUpdate on a bulk stream instead.
type MaskedInput struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*MaskedInput) Type() MsgType { return TypeMaskedInput }

func (m *MaskedInput) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *MaskedInput) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// MaskedInputRelay carries the set of agents whose masked input arrived (stage 2, coordinator to agent).
type MaskedInputRelay struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*MaskedInputRelay) Type() MsgType { return TypeMaskedInputRelay }

func (m *MaskedInputRelay) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *MaskedInputRelay) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// ConsistencyCheck carries an agent's signature over the surviving set (stage 3, agent to coordinator).
type ConsistencyCheck struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*ConsistencyCheck) Type() MsgType { return TypeConsistencyCheck }

func (m *ConsistencyCheck) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *ConsistencyCheck) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// ConsistencyCheckRelay carries the signatures of the surviving set (stage 3, coordinator to agent).
type ConsistencyCheckRelay struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*ConsistencyCheckRelay) Type() MsgType { return TypeConsistencyCheckRelay }

func (m *ConsistencyCheckRelay) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *ConsistencyCheckRelay) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// Unmask carries an agent's shares for unmasking: self-mask shares of survivors, key shares of dropouts (stage 4, agent to coordinator).
type Unmask struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*Unmask) Type() MsgType { return TypeUnmask }

func (m *Unmask) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *Unmask) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// UnmaskRelay carries the outcome of unmasking (stage 4, coordinator to agent).
type UnmaskRelay struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*UnmaskRelay) Type() MsgType { return TypeUnmaskRelay }

func (m *UnmaskRelay) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *UnmaskRelay) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// StagePayload returns the crypto/secagg payload of a SecAgg+ stage
// message or relay, and false for any other message.
func StagePayload(m Message) ([]byte, bool) {
	switch v := m.(type) {
	case *AdvertiseKeys:
		return v.Payload, true
	case *AdvertiseKeysRelay:
		return v.Payload, true
	case *ShareKeys:
		return v.Payload, true
	case *ShareKeysRelay:
		return v.Payload, true
	case *MaskedInput:
		return v.Payload, true
	case *MaskedInputRelay:
		return v.Payload, true
	case *ConsistencyCheck:
		return v.Payload, true
	case *ConsistencyCheckRelay:
		return v.Payload, true
	case *Unmask:
		return v.Payload, true
	case *UnmaskRelay:
		return v.Payload, true
	}
	return nil, false
}

// ExchangeStage sends one SecAgg+ stage message — msg's binary form,
// wrapped by wrap — through send (which also gets its size) and decodes
// the relay answered into out; out nil takes an Ack or an empty relay
// (the last stage). Agents and fedge simulate's virtual agents run their
// stages through it.
func ExchangeStage(s Stage, msg encoding.BinaryMarshaler, wrap func([]byte) Message, out encoding.BinaryUnmarshaler,
	send func(m Message, size int) (Message, error)) error {
	payload, err := msg.MarshalBinary()
	if err != nil {
		return err
	}
	resp, err := send(wrap(payload), len(payload))
	if err != nil {
		return err
	}
	relay, ok := StagePayload(resp)
	if _, ack := resp.(*Ack); !ok && !ack {
		return fmt.Errorf("stage %d: unexpected %v reply", s, resp.Type())
	}
	if out == nil {
		return nil
	}
	if err := out.UnmarshalBinary(bytes.Clone(relay)); err != nil {
		return fmt.Errorf("stage %d relay: %w", s, err)
	}
	return nil
}
