package secagg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// atMaskedInput plays the first two stages of a round of 3 clients of
// dimension dim and returns the simulation with its server taking masked
// inputs.
func atMaskedInput(tb testing.TB, dim int) *sim {
	tb.Helper()
	s := newSim(tb, rand.New(rand.NewPCG(7, 9)), 3, 2, 2, dim)
	for _, id := range s.ids {
		m, err := s.clients[id].AdvertiseKeys()
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.srv.AddAdvertiseKeys(wire(tb, m, &AdvertiseKeys{})); err != nil {
			tb.Fatal(err)
		}
	}
	next, err := s.srv.EndAdvertiseKeys()
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range next {
		kl, err := s.srv.KeyList(id)
		if err != nil {
			tb.Fatal(err)
		}
		m, err := s.clients[id].ShareKeys(wire(tb, kl, &KeyList{}))
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.srv.AddShareKeys(wire(tb, m, &ShareKeys{})); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := s.srv.EndShareKeys(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// feedCuts writes b into st in pieces whose sizes cycle through cuts
// (a zero size writes an empty piece), and returns the first error.
func feedCuts(st *MaskedStream, b, cuts []byte) error {
	if len(cuts) == 0 {
		cuts = []byte{byte(len(b))}
	}
	for i, k := 0, 0; i < len(b); k++ {
		n := min(int(cuts[k%len(cuts)]), len(b)-i)
		if n == 0 && k > 4*len(b)+len(cuts) {
			n = len(b) - i // only empty pieces: finish the input
		}
		if _, err := st.Write(b[i : i+n]); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// FuzzMaskedStream checks the server's streaming aggregation against the
// one-shot sum: a masked input fed in pieces of arbitrary sizes adds
// exactly its words into the running sum (wrapping mod 2^32); an
// undoing stream fed the same bytes in other pieces takes them out
// again, as does one fed any prefix of an abandoned input; and a stream
// whose header was altered is refused before anything is added.
func FuzzMaskedStream(f *testing.F) {
	const dim = 37
	s := atMaskedInput(f, dim)
	id := s.ids[0]
	f.Add([]byte{1, 2, 3, 4, 5}, []byte{1}, []byte{7, 0, 13}, uint16(60), byte(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, []byte{42, 4, 3}, []byte{200}, uint16(0), byte(3))
	f.Add([]byte{9}, []byte{0, 1, 0, 5}, []byte{5, 250}, uint16(1000), byte(17))
	f.Fuzz(func(t *testing.T, words, cuts, undoCuts []byte, prefix uint16, flip byte) {
		m := &MaskedInput{Round: s.srv.p.digest, From: id, Y: make([]uint32, dim)}
		for i := range m.Y {
			if len(words) > 0 {
				var w [4]byte
				for j := range w {
					w[j] = words[(4*i+j)%len(words)]
				}
				m.Y[i] = binary.LittleEndian.Uint32(w[:]) * uint32(i+1)
			}
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		before := slices.Clone(s.srv.sum)
		if flip != 0 {
			bad := slices.Clone(b)
			bad[int(flip)%maskedHeaderSize] ^= flip
			if err := feedCuts(s.srv.StreamMaskedInput(id), bad, cuts); err == nil {
				t.Fatalf("a header altered at byte %d was accepted", int(flip)%maskedHeaderSize)
			}
			if !slices.Equal(s.srv.sum, before) {
				t.Fatal("a refused stream changed the sum")
			}
		}
		want := slices.Clone(before)
		addVec(want, m.Y)
		if err := feedCuts(s.srv.StreamMaskedInput(id), b, cuts); err != nil {
			t.Fatalf("adding stream: %v", err)
		}
		if !slices.Equal(s.srv.sum, want) {
			t.Fatal("the streamed sum differs from the one-shot sum")
		}
		if err := feedCuts(s.srv.UndoMaskedStream(id), b, undoCuts); err != nil {
			t.Fatalf("undoing stream: %v", err)
		}
		if !slices.Equal(s.srv.sum, before) {
			t.Fatal("undoing the whole input did not restore the sum")
		}
		p := b[:int(prefix)%(len(b)+1)]
		if err := feedCuts(s.srv.StreamMaskedInput(id), p, cuts); err != nil {
			t.Fatalf("adding a prefix: %v", err)
		}
		if err := feedCuts(s.srv.UndoMaskedStream(id), p, undoCuts); err != nil {
			t.Fatalf("undoing a prefix: %v", err)
		}
		if !slices.Equal(s.srv.sum, before) {
			t.Fatalf("undoing a %d-byte prefix did not restore the sum", len(p))
		}
	})
}

// TestMaskedInputReadAt checks that the encoding read through ReadAt at
// any offset and in any piece size is MarshalBinary's.
func TestMaskedInputReadAt(t *testing.T) {
	m := &MaskedInput{From: 0xdeadbeef, Y: []uint32{1, 0xffffffff, 0x01020304, 5, 6, 7}}
	for i := range m.Round {
		m.Round[i] = byte(i)
	}
	want, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if m.EncodedLen() != int64(len(want)) {
		t.Fatalf("EncodedLen %d, MarshalBinary %d bytes", m.EncodedLen(), len(want))
	}
	for piece := 1; piece <= len(want)+3; piece++ {
		var got []byte
		for off := int64(0); ; off += int64(piece) {
			buf := make([]byte, piece)
			n, err := m.ReadAt(buf, off)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("piece %d at %d: %v", piece, off, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("piece %d: ReadAt's bytes differ from MarshalBinary's", piece)
		}
	}
	if _, err := m.ReadAt(make([]byte, 1), -1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("negative offset: %v", err)
	}
}

// TestMaskInPlace checks that masking in place gives MaskedInput's
// vector, in the input's own memory.
func TestMaskInPlace(t *testing.T) {
	const dim = 50
	var ys [2][]uint32
	for k, inPlace := range []bool{false, true} {
		s := atMaskedInput(t, dim)
		id := s.ids[1]
		sl, err := s.srv.ShareList(id)
		if err != nil {
			t.Fatal(err)
		}
		x := slices.Clone(s.inputs[id])
		var m *MaskedInput
		if inPlace {
			m, err = s.clients[id].MaskInPlace(wire(t, sl, &ShareList{}), x)
		} else {
			m, err = s.clients[id].MaskedInput(wire(t, sl, &ShareList{}), x)
		}
		if err != nil {
			t.Fatal(err)
		}
		if aliased := &m.Y[0] == &x[0]; aliased != inPlace {
			t.Fatalf("in place %v: Y shares the input's memory: %v", inPlace, aliased)
		}
		if slices.Equal(m.Y, s.inputs[id]) {
			t.Fatal("the masked input equals the input")
		}
		ys[k] = m.Y
	}
	if !slices.Equal(ys[0], ys[1]) {
		t.Fatal("MaskInPlace's vector differs from MaskedInput's")
	}
}

// TestDecodeMeanInPlace checks the in-place decoding against DecodeMean.
func TestDecodeMeanInPlace(t *testing.T) {
	q := Quantizer{Clip: 2, Bits: 20, MaxWeight: 100}
	rng := rand.New(rand.NewPCG(1, 2))
	sum := make([]uint32, 1001)
	for i := range sum {
		sum[i] = uint32(int32(rng.IntN(1<<22) - 1<<21))
	}
	sum[len(sum)-1] = 250
	want := make([]float32, len(sum)-1)
	if _, err := q.DecodeMean(want, sum); err != nil {
		t.Fatal(err)
	}
	mean, w, err := q.DecodeMeanInPlace(sum)
	if err != nil || w != 250 {
		t.Fatalf("weight %d, %v", w, err)
	}
	if &mean[0] != (*float32)(unsafe.Pointer(&sum[0])) {
		t.Fatal("the mean is not in the sum's memory")
	}
	if !slices.Equal(mean, want) {
		t.Fatal("in-place mean differs from DecodeMean's")
	}
	if _, _, err := q.DecodeMeanInPlace(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty sum: %v", err)
	}
}
