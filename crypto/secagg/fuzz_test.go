package secagg

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// decodeAs returns a decoder-and-encoder pair for a message type.
type codec struct {
	name string
	new  func() wireMsg
}

var codecs = []codec{
	{"AdvertiseKeys", func() wireMsg { return &AdvertiseKeys{} }},
	{"KeyList", func() wireMsg { return &KeyList{} }},
	{"ShareKeys", func() wireMsg { return &ShareKeys{} }},
	{"ShareList", func() wireMsg { return &ShareList{} }},
	{"MaskedInput", func() wireMsg { return &MaskedInput{} }},
	{"SurvivorList", func() wireMsg { return &SurvivorList{} }},
	{"ConsistencyCheck", func() wireMsg { return &ConsistencyCheck{} }},
	{"SignatureList", func() wireMsg { return &SignatureList{} }},
	{"Unmask", func() wireMsg { return &Unmask{} }},
}

// fuzzDecoder checks that decoding arbitrary bytes never panics, fails
// only with ErrMalformed, and that whatever decodes re-encodes to exactly
// the same bytes (the encoding is canonical).
func fuzzDecoder(f *testing.F, newMsg func() wireMsg) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMsg()
		if err := m.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", data, out)
		}
	})
}

func FuzzUnmarshalAdvertiseKeys(f *testing.F)    { fuzzDecoder(f, codecs[0].new) }
func FuzzUnmarshalKeyList(f *testing.F)          { fuzzDecoder(f, codecs[1].new) }
func FuzzUnmarshalShareKeys(f *testing.F)        { fuzzDecoder(f, codecs[2].new) }
func FuzzUnmarshalShareList(f *testing.F)        { fuzzDecoder(f, codecs[3].new) }
func FuzzUnmarshalMaskedInput(f *testing.F)      { fuzzDecoder(f, codecs[4].new) }
func FuzzUnmarshalSurvivorList(f *testing.F)     { fuzzDecoder(f, codecs[5].new) }
func FuzzUnmarshalConsistencyCheck(f *testing.F) { fuzzDecoder(f, codecs[6].new) }
func FuzzUnmarshalSignatureList(f *testing.F)    { fuzzDecoder(f, codecs[7].new) }
func FuzzUnmarshalUnmask(f *testing.F)           { fuzzDecoder(f, codecs[8].new) }

// seedMessages runs a small round (one client dropping after ShareKeys so
// that Unmask carries both share kinds) and returns every encoded message
// by type name.
func seedMessages(t *testing.T) map[string][][]byte {
	rng := rand.New(rand.NewPCG(99, 1))
	s := newSim(t, rng, 5, 4, 3, 6)
	s.drop[s.ids[4]] = 2
	out := map[string][][]byte{}
	rec := func(name string, m wireMsg) {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = append(out[name], b)
	}
	srv, cl := s.srv, s.clients
	for _, id := range s.ids {
		m := must(cl[id].AdvertiseKeys())(t, "AdvertiseKeys")
		rec("AdvertiseKeys", m)
		noErr(t, "AddAdvertiseKeys", srv.AddAdvertiseKeys(m))
	}
	next := must(srv.EndAdvertiseKeys())(t, "EndAdvertiseKeys")
	for _, id := range next {
		kl := must(srv.KeyList(id))(t, "KeyList")
		rec("KeyList", kl)
		m := must(cl[id].ShareKeys(kl))(t, "ShareKeys")
		rec("ShareKeys", m)
		noErr(t, "AddShareKeys", srv.AddShareKeys(m))
	}
	next = must(srv.EndShareKeys())(t, "EndShareKeys")
	for _, id := range next {
		sl := must(srv.ShareList(id))(t, "ShareList")
		rec("ShareList", sl)
		if s.dropped(id, 2) {
			continue
		}
		m := must(cl[id].MaskedInput(sl, s.inputs[id]))(t, "MaskedInput")
		rec("MaskedInput", m)
		noErr(t, "AddMaskedInput", srv.AddMaskedInput(m))
	}
	next = must(srv.EndMaskedInput())(t, "EndMaskedInput")
	list := must(srv.SurvivorList())(t, "SurvivorList")
	rec("SurvivorList", list)
	for _, id := range next {
		m := must(cl[id].ConsistencyCheck(list))(t, "ConsistencyCheck")
		rec("ConsistencyCheck", m)
		noErr(t, "AddConsistencyCheck", srv.AddConsistencyCheck(m))
	}
	next = must(srv.EndConsistencyCheck())(t, "EndConsistencyCheck")
	for _, id := range next {
		sg := must(srv.SignatureList(id))(t, "SignatureList")
		rec("SignatureList", sg)
		m := must(cl[id].Unmask(sg))(t, "Unmask")
		rec("Unmask", m)
		noErr(t, "AddUnmask", srv.AddUnmask(m))
	}
	must(srv.Finish())(t, "Finish")
	return out
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/*/ from a real round when
// SECAGG_WRITE_FUZZ_SEEDS=1 (after a wire format change).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SECAGG_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set SECAGG_WRITE_FUZZ_SEEDS=1 to regenerate the fuzz seeds")
	}
	msgs := seedMessages(t)
	for _, c := range codecs {
		dir := filepath.Join("testdata", "fuzz", "FuzzUnmarshal"+c.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(name string, b []byte) {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		valid := msgs[c.name]
		for i, b := range valid[:min(2, len(valid))] {
			write(fmt.Sprintf("valid-%d", i), b)
		}
		b := valid[0]
		write("bad-truncated", b[:len(b)-1])
		write("bad-trailing", append(append([]byte(nil), b...), 0))
		write("bad-header", b[:headerSize-1])
		huge := append([]byte(nil), b...)
		huge[0] = 2
		write("bad-version", huge)
	}
}

// TestFuzzSeeds: the committed seeds decode (valid-*) or are rejected
// (bad-*) as their names say, so a format change cannot silently turn
// the corpus into noise.
func TestFuzzSeeds(t *testing.T) {
	for _, c := range codecs {
		dir := filepath.Join("testdata", "fuzz", "FuzzUnmarshal"+c.name)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var valid int
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitN(string(raw), "\n", 3)
			if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
				t.Fatalf("%s/%s: not a fuzz corpus file", dir, e.Name())
			}
			q := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
			data, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("%s/%s: %v", dir, e.Name(), err)
			}
			err = c.new().UnmarshalBinary([]byte(data))
			switch {
			case strings.HasPrefix(e.Name(), "valid-"):
				if err != nil {
					t.Fatalf("%s/%s: %v", dir, e.Name(), err)
				}
				valid++
			case strings.HasPrefix(e.Name(), "bad-"):
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s/%s decodes: %v", dir, e.Name(), err)
				}
			}
		}
		if valid == 0 {
			t.Fatalf("%s: no valid seed", dir)
		}
	}
}

// TestDecodeLimits: a count field claiming more entries than the bytes
// hold, or more than the limit, is rejected before any allocation.
func TestDecodeLimits(t *testing.T) {
	round := [32]byte{1}
	hdr := func(typ byte) []byte { return header(typ, &round, 0) }
	tests := []struct {
		name string
		msg  wireMsg
		data []byte
	}{
		{"KeyList huge count", &KeyList{}, put32(put32(hdr(typeKeyList), 1), 1<<31)},
		{"MaskedInput huge dim", &MaskedInput{}, put32(put32(hdr(typeMaskedInput), 1), 1<<30)},
		{"MaskedInput count over bytes", &MaskedInput{}, append(put32(put32(hdr(typeMaskedInput), 1), 3), make([]byte, 8)...)},
		{"SurvivorList over limit", &SurvivorList{}, put32(hdr(typeSurvivorList), MaxParticipants+1)},
		{"Unmask bad kind", &Unmask{}, append(put32(put32(put32(hdr(typeUnmask), 1), 1), 2), append([]byte{3}, make([]byte, ShareSize)...)...)},
		{"Unmask element out of field", &Unmask{}, append(put32(put32(put32(hdr(typeUnmask), 1), 1), 2), append([]byte{1}, bytes.Repeat([]byte{0xff}, ShareSize)...)...)},
		{"wrong type", &ShareKeys{}, put32(put32(hdr(typeShareList), 1), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(10, func() { _ = tt.msg.UnmarshalBinary(tt.data) })
			if err := tt.msg.UnmarshalBinary(tt.data); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v", err)
			}
			if allocs > 8 { // the error value only, never a buffer
				t.Fatalf("%v allocations rejecting %s", allocs, tt.name)
			}
		})
	}
}
