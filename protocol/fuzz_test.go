package protocol

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fuzzLimits are small enough that fuzzers reach every limit check.
var fuzzLimits = Limits{MaxFrame: 1 << 16, MaxString: 64, MaxCert: 256, MaxAdminBody: 512, MaxList: 64, MaxBlob: 1 << 24}

// Message families, one fuzz target each.
var fuzzFamilies = map[string][]MsgType{
	"FuzzDecodeSession": {TypeHello, TypeHelloAck, TypeError, TypeAck, TypeRedirect, TypeHeartbeat, TypeCancel, TypeEnrollRequest, TypeEnrollResponse},
	"FuzzDecodeRound":   {TypeRoundInvite, TypeRoundJoin, TypeRoundPlan, TypeRoundAbort, TypeMaskedUpdate, TypeEvalRequest, TypeEvalResult, TypeStatsRequest, TypePrepRequest, TypeExplainRequest},
	"FuzzDecodeSecAgg": {TypeAdvertiseKeys, TypeAdvertiseKeysRelay, TypeShareKeys, TypeShareKeysRelay, TypeMaskedInput,
		TypeMaskedInputRelay, TypeConsistencyCheck, TypeConsistencyCheckRelay, TypeUnmask, TypeUnmaskRelay},
	"FuzzDecodeModel": {TypeModelAnnounce, TypeModelRequest, TypeBlobInfo, TypeBlobChunk, TypeBlobResume, TypeBlobGet, TypeBlobPut},
	"FuzzDecodeAdmin": {TypeAdminRequest, TypeAdminResponse, TypeGroupStart, TypeGroupResult},
}

// checkCanonical asserts that a decoded message re-encodes, and that
// decoding that encoding and encoding again gives the same bytes.
func checkCanonical(t *testing.T, m Message) {
	t.Helper()
	b1, err := Marshal(nil, m, fuzzLimits)
	if err != nil {
		t.Fatalf("%v decoded but does not re-encode: %v", m.Type(), err)
	}
	m2, err := Unmarshal(m.Type(), b1, fuzzLimits)
	if err != nil {
		t.Fatalf("%v re-encoding does not decode: %v", m.Type(), err)
	}
	b2, err := Marshal(nil, m2, fuzzLimits)
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("%v encoding not stable: %x vs %x (%v)", m.Type(), b1, b2, err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, m, err := DecodeMessage(data, fuzzLimits)
		if err != nil {
			return
		}
		if m == nil {
			if !fr.Type.IsOptional() || fr.Type.Known() {
				t.Fatalf("nil message for %v without error", fr.Type)
			}
			return
		}
		if len(fr.Body) > fuzzLimits.MaxFrame {
			t.Fatalf("body of %d bytes passed the frame limit", len(fr.Body))
		}
		checkCanonical(t, m)
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewFrameReader(bytes.NewReader(data), fuzzLimits)
		rest := data
		for {
			fr, err := r.ReadFrame()
			sf, n, serr := DecodeFrame(rest, fuzzLimits)
			if (err == nil) != (serr == nil) {
				t.Fatalf("stream and slice decoders disagree: %v vs %v", err, serr)
			}
			if err != nil {
				return
			}
			if fr.Type != sf.Type || fr.Flags != sf.Flags || fr.ID != sf.ID || !bytes.Equal(fr.Body, sf.Body) {
				t.Fatalf("stream frame %+v != slice frame %+v", fr, sf)
			}
			rest = rest[n:]
		}
	})
}

func fuzzFamily(f *testing.F, family []MsgType) {
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		ty := MsgType(typ)
		known := false
		for _, ft := range family {
			known = known || ft == ty
		}
		if !known {
			ty = family[int(typ)%len(family)]
		}
		m, err := Unmarshal(ty, body, fuzzLimits)
		if err != nil {
			return
		}
		checkCanonical(t, m)
	})
}

func FuzzDecodeSession(f *testing.F) { fuzzFamily(f, fuzzFamilies["FuzzDecodeSession"]) }
func FuzzDecodeRound(f *testing.F)   { fuzzFamily(f, fuzzFamilies["FuzzDecodeRound"]) }
func FuzzDecodeSecAgg(f *testing.F)  { fuzzFamily(f, fuzzFamilies["FuzzDecodeSecAgg"]) }
func FuzzDecodeModel(f *testing.F)   { fuzzFamily(f, fuzzFamilies["FuzzDecodeModel"]) }
func FuzzDecodeAdmin(f *testing.F)   { fuzzFamily(f, fuzzFamilies["FuzzDecodeAdmin"]) }

// corpusFile formats fuzz arguments in the go test corpus format.
func corpusFile(args ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case byte:
			fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(v)))
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		default:
			panic(fmt.Sprintf("corpusFile: %T", a))
		}
	}
	return []byte(b.String())
}

func writeSeed(t *testing.T, fuzzName, seedName string, content []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, seedName), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFuzzSeeds writes (with -update) and then checks the seed corpora:
// every message type has a seed in FuzzDecodeFrame and in its family's
// target, and every seed of a valid sample still decodes.
func TestFuzzSeeds(t *testing.T) {
	if *update {
		var stream []byte
		for _, m := range sampleMessages() {
			frame, err := EncodeFrame(nil, m, FlagRequest, 5, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			name := m.Type().String()
			writeSeed(t, "FuzzDecodeFrame", name, corpusFile(frame))
			stream = append(stream, frame...)
			body, _ := Marshal(nil, m, Limits{})
			for fam, types := range fuzzFamilies {
				for _, ty := range types {
					if ty == m.Type() {
						writeSeed(t, fam, name, corpusFile(byte(ty), body))
					}
				}
			}
		}
		writeSeed(t, "FuzzReadFrame", "stream", corpusFile(stream))
		writeSeed(t, "FuzzReadFrame", "lying-length", corpusFile(appendFrameHeader(nil, TypeAck, 0, 0, 1<<15)))
		writeSeed(t, "FuzzDecodeFrame", "unknown-optional", corpusFile(AppendFrame(nil, Frame{Type: Optional | 0x70, Body: []byte{1}})))
	}
	for _, m := range sampleMessages() {
		name := m.Type().String()
		dirs := []string{"FuzzDecodeFrame"}
		for fam, types := range fuzzFamilies {
			for _, ty := range types {
				if ty == m.Type() {
					dirs = append(dirs, fam)
				}
			}
		}
		if len(dirs) != 2 {
			t.Errorf("%v belongs to %d fuzz families, want 1", m.Type(), len(dirs)-1)
		}
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", dir, name))
			if err != nil {
				t.Errorf("missing seed: %v (run go test -run TestFuzzSeeds -update)", err)
				continue
			}
			if !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
				t.Errorf("%s/%s: not a corpus file", dir, name)
			}
		}
	}
}

func readSeedFile(t *testing.T, fuzzName, seedName string) ([]byte, error) {
	t.Helper()
	return os.ReadFile(filepath.Join("testdata", "fuzz", fuzzName, seedName))
}
