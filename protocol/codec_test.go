package protocol

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seeds under testdata/")

func testHash(seed string) Hash { return sha256.Sum256([]byte(seed)) }

// sampleBlobInfo returns a valid manifest for a 10,000-byte blob.
func sampleBlobInfo() BlobInfo {
	return BlobInfo{
		ID: "round/7/update", Size: 10000, ChunkSize: 4096, Hash: testHash("blob"),
		Chunks: []Hash{testHash("c0"), testHash("c1"), testHash("c2")},
	}
}

// sampleMessages returns one fully populated message of every known type.
func sampleMessages() []Message {
	t0 := time.UnixMilli(1_760_000_000_123)
	return []Message{
		&Hello{MinVersion: 1, Version: 3, AgentID: "agent-0042", Software: "fedge v0.1.0", ModelVersion: 17, ModelHash: testHash("m17")},
		&HelloAck{Version: 1, NodeID: "coord-b", LeaderHint: "10.0.0.1:7443", HeartbeatInterval: 30 * time.Second},
		&Error{Code: CodeNotLeader, Message: "leader is coord-a"},
		&Ack{},
		&Redirect{Addr: "10.0.0.1:7443", NodeID: "coord-a"},
		&Heartbeat{Seq: 9, Sent: t0, ModelVersion: 17, Busy: true, Status: &AgentStatus{
			DataKind: "mnist", Features: 784, Classes: 10, TrainExamples: 54000, HeldOutExamples: 6000,
			Trainer: "engine", TrainerFailure: "trainer exited 1", TrainerFailureAt: t0.Add(-time.Minute),
			Events: []StatusEvent{{At: t0.Add(-time.Second), Level: "error", Message: "left round 7: training: shapes differ"}}},
			Lines: []ServedLine{{Name: "2nn", Version: 17}, {Name: "logreg", Declined: true}}, Concurrent: 2},
		&EnrollRequest{Token: "jt_abcdef", CSR: []byte{0x30, 0x82, 0x01, 0x02}, Labels: map[string]string{"os": "linux", "site": "paris"}},
		&EnrollResponse{AgentID: "agent-0042", Cert: []byte{0x30, 0x01}, CACert: []byte{0x30, 0x02}},
		&RoundInvite{RoundID: 7, Job: "mnist-cnn", Kind: RoundEval, Deadlines: []StageDeadline{
			{StageTrain, t0.Add(time.Minute)}, {StageAdvertiseKeys, t0.Add(2 * time.Minute)}, {StageUnmask, t0.Add(5 * time.Minute)}}},
		&RoundJoin{RoundID: 7, Accept: false, Reason: "busy"},
		&RoundPlan{RoundID: 7, ModelVersion: 17, ModelHash: testHash("m17"), Epochs: 5, BatchSize: 32, LR: 0.05, Mu: 0.01,
			Optimizer: "sgd", Momentum: 0.9, WeightDecay: 1e-4, SecAgg: []byte("secagg-config"),
			DP: DPParams{ClipNorm: 1.5, NoiseStdDev: 0.3, Adaptive: true, BitScale: 0.5}},
		&RoundAbort{RoundID: 7, Reason: "leader changed"},
		&AdvertiseKeys{RoundID: 7, Payload: []byte("ak")},
		&AdvertiseKeysRelay{RoundID: 7, Payload: []byte("akr")},
		&ShareKeys{RoundID: 7, Payload: []byte("sk")},
		&ShareKeysRelay{RoundID: 7, Payload: []byte("skr")},
		&MaskedInput{RoundID: 7, Payload: []byte("mi")},
		&MaskedInputRelay{RoundID: 7, Payload: []byte("mir")},
		&ConsistencyCheck{RoundID: 7, Payload: []byte("cc")},
		&ConsistencyCheckRelay{RoundID: 7, Payload: []byte("ccr")},
		&Unmask{RoundID: 7, Payload: []byte("um")},
		&UnmaskRelay{RoundID: 7, Payload: []byte("umr")},
		&MaskedUpdate{RoundID: 7, Elements: 2500, Blob: sampleBlobInfo()},
		&EvalRequest{RoundID: 8, ModelVersion: 18, ModelHash: testHash("m18"), BaselineVersion: 17, BaselineHash: testHash("m17"), SecAgg: []byte("cfg")},
		&EvalResult{RoundID: 8, Payload: []byte("masked sums")},
		&StatsRequest{RoundID: 9, Features: 784, SecAgg: []byte("cfg")},
		&PrepRequest{RoundID: 9, Phase: 2, Plan: []byte(`{"phase":2}`), SecAgg: []byte("cfg")},
		&ExplainRequest{RoundID: 10, ModelVersion: 4, ModelHash: Hash{1, 2}, Features: 784, Steps: 32, MaxExamples: 256, SecAgg: []byte("cfg")},
		&ModelAnnounce{Version: 18, Hash: testHash("m18"), Size: 6_653_480, Encoding: "int8+zstd", BaseVersion: 17},
		&ModelRequest{Version: 18, HaveBase: testHash("m17"), Offset: 3 << 20},
		func() Message { b := sampleBlobInfo(); return &b }(),
		&BlobChunk{Offset: 4096, Data: []byte("chunk bytes")},
		&BlobResume{Offset: 8192},
		&BlobGet{Hash: testHash("blob"), Offset: 2 << 20},
		&BlobPut{Blob: sampleBlobInfo()},
		&GroupStart{RoundID: 7, Group: 2, Owner: "mnist-cnn", SecAgg: []byte("group-config"),
			Agents: []GroupAgent{{AgentID: "agent-0042", ID: 1}, {AgentID: "agent-0043", ID: 2}}, TrainBy: t0.Add(time.Minute), StageTime: 30 * time.Second, Index: 1234},
		&GroupResult{RoundID: 7, Group: 2, Survivors: []string{"agent-0042", "agent-0043"},
			Stages: []GroupStage{{Name: "advertise_keys", Expected: 2, Arrived: 2, Took: 1500 * time.Millisecond}},
			Busy:   250 * time.Millisecond, BytesIn: 4096, BytesOut: 8192, Elements: 2500, Blob: sampleBlobInfo()},
		&AdminRequest{Verb: "rollout.promote", Body: []byte(`{"rollout":"r1"}`)},
		&AdminResponse{Body: []byte(`{"ok":true}`)},
		&Cancel{ID: 12},
	}
}

func TestSamplesCoverCatalogue(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, m := range sampleMessages() {
		if seen[m.Type()] {
			t.Errorf("duplicate sample for %v", m.Type())
		}
		seen[m.Type()] = true
	}
	for _, ty := range Types() {
		if !seen[ty] {
			t.Errorf("no sample message for %v", ty)
		}
		if ty.Since() < MinVersion || ty.Since() > CurrentVersion {
			t.Errorf("%v: Since %d outside [%d, %d]", ty, ty.Since(), MinVersion, CurrentVersion)
		}
		if New(ty).Type() != ty {
			t.Errorf("New(%v).Type() = %v", ty, New(ty).Type())
		}
	}
	if len(seen) != len(Types()) {
		t.Errorf("%d samples, %d types", len(seen), len(Types()))
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.Type().String(), func(t *testing.T) {
			frame, err := EncodeFrame(nil, m, FlagRequest, 99, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			f, got, err := DecodeMessage(frame, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != m.Type() || f.Flags != FlagRequest || f.ID != 99 {
				t.Errorf("frame header = %v %v %d", f.Type, f.Flags, f.ID)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, m)
			}
			// The decoded message must not alias the frame buffer.
			for i := range frame {
				frame[i] ^= 0xff
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("decoded message aliases the frame buffer")
			}
		})
	}
}

// TestFrameReaderStream reads every sample back from one stream, with an
// unknown optional frame in between that must be skipped.
func TestFrameReaderStream(t *testing.T) {
	var buf []byte
	msgs := sampleMessages()
	for i, m := range msgs {
		var err error
		buf, err = EncodeFrame(buf, m, FlagResponse, uint64(i), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			buf = AppendFrame(buf, Frame{Type: Optional | 0x7e, Body: []byte("from the future")})
		}
	}
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(buf)), Limits{})
	for i, want := range msgs {
		f, got, err := fr.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if f.ID != uint64(i) || !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d: got %v id %d, want %v", i, got.Type(), f.ID, want.Type())
		}
	}
	if _, _, err := fr.ReadMessage(); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

// TestWireGolden freezes the byte layout of every message: a change of
// layout without a new type or capability version breaks old peers.
func TestWireGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	for _, m := range sampleMessages() {
		name := m.Type().String()
		frame, err := EncodeFrame(nil, m, 0, 0, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".hex")
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(hex.EncodeToString(frame)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test -run TestWireGolden -update)", name, err)
		}
		if got := hex.EncodeToString(frame); got != strings.TrimSpace(string(want)) {
			t.Errorf("%s: wire layout changed:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	lim := Limits{MaxString: 8, MaxList: 4, MaxFrame: 1 << 10}
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrMalformed},
		{"reserved flag", []byte{byte(TypeAck), 0x10, 0}, ErrMalformed},
		{"request and response", []byte{byte(TypeAck), 0x03, 1, 0}, ErrMalformed},
		{"frame too large", []byte{byte(TypeAck), 0, 0x80, 0x10}, ErrTooLarge},
		{"body truncated", []byte{byte(TypeAck), 0, 5, 1}, ErrMalformed},
		{"length varint overflow", []byte{byte(TypeAck), 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformed},
		{"unknown mandatory", AppendFrame(nil, Frame{Type: 0x7f}), ErrUnknownType},
		{"trailing bytes", AppendFrame(nil, Frame{Type: TypeAck, Body: []byte{0}}), ErrMalformed},
		{"string over limit", AppendFrame(nil, Frame{Type: TypeRedirect, Body: append([]byte{9}, "123456789\x00"...)}), ErrTooLarge},
		{"string past end", AppendFrame(nil, Frame{Type: TypeRedirect, Body: []byte{5, 'a'}}), ErrMalformed},
		{"invalid utf8", AppendFrame(nil, Frame{Type: TypeRedirect, Body: []byte{2, 0xff, 0xfe, 0}}), ErrMalformed},
		{"bad boolean", AppendFrame(nil, Frame{Type: TypeRoundJoin, Body: []byte{7, 2, 0}}), ErrMalformed},
		{"list over limit", AppendFrame(nil, Frame{Type: TypeEnrollRequest, Body: []byte{0, 0, 5}}), ErrTooLarge},
		{"list past end", AppendFrame(nil, Frame{Type: TypeEnrollRequest, Body: []byte{0, 0, 3, 1, 'a'}}), ErrMalformed},
		{"labels unsorted", AppendFrame(nil, Frame{Type: TypeEnrollRequest, Body: []byte{0, 0, 2, 1, 'b', 0, 1, 'a', 0}}), ErrMalformed},
		{"labels duplicate", AppendFrame(nil, Frame{Type: TypeEnrollRequest, Body: []byte{0, 0, 2, 1, 'a', 0, 1, 'a', 0}}), ErrMalformed},
		{"round kind", AppendFrame(nil, Frame{Type: TypeRoundInvite, Body: []byte{1, 0, 9, 0}}), ErrMalformed},
		{"deadlines unsorted", AppendFrame(nil, Frame{Type: TypeRoundInvite, Body: []byte{1, 0, 0, 2, 3, 0, 2, 0}}), ErrMalformed},
		{"u32 overflow", AppendFrame(nil, Frame{Type: TypeHelloAck, Body: []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0}}), ErrMalformed},
		{"hash truncated", AppendFrame(nil, Frame{Type: TypeModelRequest, Body: []byte{1, 1, 2, 3}}), ErrMalformed},
		{"blob chunk count", AppendFrame(nil, Frame{Type: TypeBlobInfo, Body: func() []byte {
			b := []byte{0}                     // ID
			b = binary.AppendUvarint(b, 5000)  // Size: needs 2 chunks of 4096
			b = binary.AppendUvarint(b, 4096)  // ChunkSize
			b = append(b, make([]byte, 32)...) // Hash
			b = append(b, 1)                   // one chunk hash only
			return append(b, make([]byte, 32)...)
		}()}), ErrMalformed},
		{"blob chunk size", AppendFrame(nil, Frame{Type: TypeBlobInfo, Body: []byte{0, 0, 16, 0}}), ErrMalformed},
		{"admin body over limit", AppendFrame(nil, Frame{Type: TypeAdminResponse, Body: append([]byte{0x80, 0x80, 0x80, 0x01}, make([]byte, 8)...)}), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m, err := DecodeMessage(tt.frame, lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v (msg %v), want %v", err, m, tt.want)
			}
			// The stream reader must agree with the slice decoder.
			fr := NewFrameReader(bytes.NewReader(tt.frame), lim)
			if _, _, err := fr.ReadMessage(); err == nil {
				t.Fatalf("FrameReader accepted what DecodeMessage rejected")
			}
		})
	}
}

func TestUnknownOptionalSkipped(t *testing.T) {
	f := AppendFrame(nil, Frame{Type: Optional | 0x55, Flags: FlagRequest, ID: 3, Body: []byte{1, 2, 3}})
	fr, m, err := DecodeMessage(f, Limits{})
	if err != nil || m != nil {
		t.Fatalf("unknown optional: m=%v err=%v, want skip", m, err)
	}
	if fr.ID != 3 || !fr.Type.IsOptional() || fr.Type.Known() {
		t.Fatalf("frame = %+v", fr)
	}
}

func TestEncodeLimits(t *testing.T) {
	lim := Limits{MaxString: 4, MaxAdminBody: 8, MaxList: 2}
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"long string", &Redirect{Addr: "12345"}, ErrTooLarge},
		{"bad utf8", &Redirect{Addr: "\xff"}, ErrMalformed},
		{"admin body", &AdminRequest{Verb: "x", Body: make([]byte, 9)}, ErrTooLarge},
		{"labels", &EnrollRequest{Labels: map[string]string{"a": "", "b": "", "c": ""}}, ErrTooLarge},
		{"negative duration", &HelloAck{HeartbeatInterval: -time.Second}, ErrMalformed},
		{"bad manifest", &BlobInfo{Size: 1, ChunkSize: 4096}, ErrMalformed},
		{"frame", &AdvertiseKeys{Payload: make([]byte, 2<<10)}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lim
			if tt.name == "frame" {
				l.MaxFrame = 1 << 10
			}
			if _, err := EncodeFrame(nil, tt.m, 0, 0, l); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := EncodeFrame(nil, &Ack{}, FlagRequest|FlagResponse, 1, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("both flags: %v", err)
	}
}

// TestEveryTruncationFails cuts every sample frame at every length: each
// prefix must fail cleanly, never panic or succeed.
func TestEveryTruncationFails(t *testing.T) {
	for _, m := range sampleMessages() {
		frame, err := EncodeFrame(nil, m, 0, 0, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(frame); n++ {
			if _, _, err := DecodeMessage(frame[:n], Limits{}); err == nil {
				t.Fatalf("%v cut at %d/%d decoded", m.Type(), n, len(frame))
			}
		}
		// A shorter body length (same bytes) must fail too, except where the
		// layout ends in a free-length field (BlobChunk's data).
		f, _, _ := DecodeFrame(frame, Limits{})
		for n := 0; n < len(f.Body); n++ {
			got, err := Unmarshal(f.Type, f.Body[:n], Limits{})
			if err == nil && m.Type() != TypeBlobChunk && m.Type() != TypeAck && !atTrailer(m, n) {
				t.Fatalf("%v body cut at %d/%d decoded as %+v", m.Type(), n, len(f.Body), got)
			}
		}
	}
}

// TestLyingLengthDoesNotAllocate checks that a frame header announcing a
// large body that never arrives costs far less than the announced size.
func TestLyingLengthDoesNotAllocate(t *testing.T) {
	hdr := appendFrameHeader(nil, TypeAdvertiseKeys, 0, 0, 15<<20)
	r := io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(make([]byte, 100)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := NewFrameReader(r, Limits{}).ReadFrame()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("allocated %d bytes for a 100-byte body announced as 15 MiB", got)
	}
	// A list count that cannot fit in the body is refused before make().
	body := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x04}
	if _, err := Unmarshal(TypeBlobInfo, body, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("huge chunk list: %v", err)
	}
}

func TestErrorIs(t *testing.T) {
	var err error = &Error{Code: CodeNotLeader, Message: "x"}
	if !errors.Is(err, &Error{Code: CodeNotLeader}) || errors.Is(err, &Error{Code: CodeBusy}) {
		t.Fatal("Error.Is does not compare codes")
	}
	if got := ErrorCode(999).String(); got != "code(999)" {
		t.Fatalf("unknown code string %q", got)
	}
	if TypeCancel.String() != "Cancel" || MsgType(0x7f).String() != "type(0x7f)" {
		t.Fatal("MsgType.String")
	}
}

// atTrailer reports whether a body of m cut at n bytes ends exactly where
// a trailer added in a later version starts: such a cut is a valid message
// of the older layout.
func atTrailer(m Message, n int) bool {
	hb, ok := m.(*Heartbeat)
	if !ok || hb.Status == nil {
		return false
	}
	// The heartbeat as versions 1 (no status), 3 (no lines) and 5 (no
	// concurrency) write it: each is a complete message.
	v1 := Heartbeat{Seq: hb.Seq, Sent: hb.Sent, ModelVersion: hb.ModelVersion, Busy: hb.Busy}
	v3 := v1
	v3.Status = hb.Status
	v5 := v3
	v5.Lines = hb.Lines
	for _, short := range []*Heartbeat{&v1, &v3, &v5} {
		if b, err := Marshal(nil, short, Limits{}); err == nil && len(b) == n {
			return true
		}
	}
	return false
}

// TestHeartbeatV1 decodes a heartbeat as version 1 and 2 peers send it
// (the golden bytes before version 3): Status is nil, the rest intact, and
// a heartbeat without Status still encodes to exactly those bytes.
func TestHeartbeatV1(t *testing.T) {
	old, err := hex.DecodeString("06000909f681e682b9661101")
	if err != nil {
		t.Fatal(err)
	}
	_, m, err := DecodeMessage(old, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Heartbeat{Seq: 9, Sent: time.UnixMilli(1_760_000_000_123), ModelVersion: 17, Busy: true}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("version 1 heartbeat decoded as %#v", m)
	}
	again, err := EncodeFrame(nil, want, 0, 0, Limits{})
	if err != nil || !bytes.Equal(again, old) {
		t.Fatalf("heartbeat without status encodes as %x (%v), want %x", again, err, old)
	}
}

func TestAgentStatusLimits(t *testing.T) {
	hb := &Heartbeat{Seq: 1, Status: &AgentStatus{Events: make([]StatusEvent, MaxStatusEvents+1)}}
	if _, err := Marshal(nil, hb, Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("marshal of %d events: %v, want ErrTooLarge", MaxStatusEvents+1, err)
	}
	hb.Status.Events = hb.Status.Events[:MaxStatusEvents]
	body, err := Marshal(nil, hb, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the event count (the last list length before the events)
	// to one more than allowed: each empty event is 3 bytes.
	cut := len(body) - 3*MaxStatusEvents - 1
	if body[cut] != MaxStatusEvents {
		t.Fatalf("layout: byte %d is %d, want the event count", cut, body[cut])
	}
	bad := append(append([]byte{}, body[:cut]...), MaxStatusEvents+1)
	bad = append(bad, body[cut+1:]...)
	bad = append(bad, 0, 0, 0)
	if _, err := Unmarshal(TypeHeartbeat, bad, Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("decode of %d events: %v, want ErrTooLarge", MaxStatusEvents+1, err)
	}
}
