package secagg

import (
	"encoding/binary"
)

// maskedHeaderSize is the size of an encoded MaskedInput before its
// vector: the wire header, the sender and the element count.
const maskedHeaderSize = headerSize + 8

// MaskedStream adds one client's encoded masked input (the bytes
// AddMaskedInputWire takes) into the server's running sum as they arrive,
// in order and in pieces of any size, so the server never holds the
// vector: the coordinator's streaming aggregation of large uploads. The
// header is checked as soon as it is complete (round, sender, size,
// stage); nothing is added before.
//
// The ring sum is associative, so a stream abandoned part way (the client
// dropped out before its upload completed, or the transfer restarted) is
// undone by a subtracting stream fed the same bytes (Server.UndoMaskedStream);
// only Finish counts the client as a survivor. Like the server, a stream
// is not safe for concurrent use: the caller serializes every server call.
type MaskedStream struct {
	s    *Server
	want uint32
	sub  bool

	hdr   []byte // the header, until complete
	idx   int    // sender's index once the header checked
	elem  int    // elements added so far
	carry [4]byte
	nc    int // bytes held in carry
	err   error
}

// StreamMaskedInput starts adding the masked input of client want (the
// identity the transport authenticated) into the running sum.
func (s *Server) StreamMaskedInput(want uint32) *MaskedStream {
	return &MaskedStream{s: s, want: want, idx: -1}
}

// UndoMaskedStream returns a stream that subtracts what a stream of the
// same client added from the same bytes: feed it the prefix the abandoned
// stream was fed.
func (s *Server) UndoMaskedStream(want uint32) *MaskedStream {
	return &MaskedStream{s: s, want: want, sub: true, idx: -1}
}

// Write adds the next bytes of the encoded masked input.
func (m *MaskedStream) Write(p []byte) (int, error) {
	const method = "MaskedStream.Write"
	if m.err != nil {
		return 0, m.err
	}
	n := len(p)
	if m.idx < 0 {
		k := min(maskedHeaderSize-len(m.hdr), len(p))
		m.hdr = append(m.hdr, p[:k]...)
		p = p[k:]
		if len(m.hdr) < maskedHeaderSize {
			return n, nil
		}
		if err := m.checkHeader(); err != nil {
			m.err = err
			return 0, err
		}
	}
	dim := len(m.s.sum)
	if m.s.sum == nil || m.s.stage != StageMaskedInput {
		m.err = errf(method, ErrOutOfOrder, "the running sum is closed (stage %v)", m.s.stage)
		return 0, m.err
	}
	if total := 4*(dim-m.elem) - m.nc; len(p) > total {
		m.err = errf(method, ErrMalformed, "masked input of %d runs past its %d elements", m.want, dim)
		return 0, m.err
	}
	if m.nc > 0 {
		k := copy(m.carry[m.nc:], p)
		m.nc += k
		p = p[k:]
		if m.nc < 4 {
			return n, nil
		}
		m.add(m.carry[:])
		m.nc = 0
	}
	whole := len(p) &^ 3
	m.add(p[:whole])
	m.nc = copy(m.carry[:], p[whole:])
	return n, nil
}

// add adds (or subtracts) little-endian words at the stream's position.
func (m *MaskedStream) add(src []byte) {
	dst := m.s.sum[m.elem : m.elem+len(src)/4]
	if m.sub {
		for i := range dst {
			dst[i] -= binary.LittleEndian.Uint32(src[4*i:])
		}
	} else {
		addWireLE(dst, src)
	}
	m.elem += len(dst)
}

func (m *MaskedStream) checkHeader() error {
	const method = "MaskedStream"
	var round [32]byte
	r := newReader("MaskedInput", typeMaskedInput, m.hdr, &round)
	from := r.u32()
	n := r.u32()
	if r.err != nil {
		return r.err
	}
	if from != m.want {
		return errf(method, ErrForged, "masked input claims to be from %d, sent by %d", from, m.want)
	}
	if err := m.s.checkStage(method, StageMaskedInput); err != nil {
		return err
	}
	if m.sub {
		m.idx = m.s.p.index[from]
		return nil
	}
	i, err := m.s.checkSender(method, &round, from, m.s.u2)
	if err != nil {
		return err
	}
	if m.s.sent[i] {
		return errf(method, ErrDuplicate, "second masked input from %d", from)
	}
	if int(n) != m.s.p.dim {
		return errf(method, ErrMalformed, "masked input of %d has %d elements, want %d", from, n, m.s.p.dim)
	}
	m.idx = i
	return nil
}

// Finish ends an adding stream whose every byte arrived: the client's
// masked input is in the sum and the client counts as having sent it.
func (m *MaskedStream) Finish() error {
	const method = "MaskedStream.Finish"
	switch {
	case m.err != nil:
		return m.err
	case m.sub:
		return errf(method, ErrOutOfOrder, "an undoing stream adds no input")
	case m.idx < 0 || m.elem != m.s.p.dim || m.nc != 0:
		return errf(method, ErrMalformed, "masked input of %d ended after %d of %d elements", m.want, m.elem, m.s.p.dim)
	}
	if err := m.s.checkStage(method, StageMaskedInput); err != nil {
		return err
	}
	if m.s.sent[m.idx] {
		return errf(method, ErrDuplicate, "second masked input from %d", m.want)
	}
	m.s.sent[m.idx] = true
	return nil
}
