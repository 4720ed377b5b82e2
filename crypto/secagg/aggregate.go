package secagg

import "encoding/binary"

// AddMaskedInputWire is AddMaskedInput on the encoded message: it checks
// the header, that the sender is want (the identity the transport
// authenticated), and adds the vector into the running sum straight from
// the wire bytes, without materializing it. This is the coordinator's
// streaming aggregation path; a rejected message changes nothing.
func (s *Server) AddMaskedInputWire(data []byte, want uint32) error {
	const method = "AddMaskedInputWire"
	var round [32]byte
	r := newReader("MaskedInput", typeMaskedInput, data, &round)
	from := r.u32()
	n := r.count(4, MaxDim)
	if r.err != nil {
		return r.err
	}
	if from != want {
		return errf(method, ErrForged, "masked input claims to be from %d, sent by %d", from, want)
	}
	if err := s.checkStage(method, StageMaskedInput); err != nil {
		return err
	}
	i, err := s.checkSender(method, &round, from, s.u2)
	if err != nil {
		return err
	}
	if s.sent[i] {
		return errf(method, ErrDuplicate, "second masked input from %d", from)
	}
	if n != s.p.dim {
		return errf(method, ErrMalformed, "masked input of %d has %d elements, want %d", from, n, s.p.dim)
	}
	addWireLE(s.sum, r.b[:4*n])
	s.sent[i] = true
	return nil
}

// addWireLE adds little-endian uint32s from src into dst (len(src) =
// 4·len(dst)), modulo 2^32.
func addWireLE(dst []uint32, src []byte) {
	src = src[:4*len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		s := src[4*i : 4*i+16]
		d := dst[i : i+4]
		d[0] += binary.LittleEndian.Uint32(s[0:])
		d[1] += binary.LittleEndian.Uint32(s[4:])
		d[2] += binary.LittleEndian.Uint32(s[8:])
		d[3] += binary.LittleEndian.Uint32(s[12:])
	}
	for ; i < len(dst); i++ {
		dst[i] += binary.LittleEndian.Uint32(src[4*i:])
	}
}
