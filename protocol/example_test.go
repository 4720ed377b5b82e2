package protocol_test

import (
	"bytes"
	"fmt"

	"github.com/fedge/fedge/protocol"
)

func ExampleEncodeFrame() {
	frame, err := protocol.EncodeFrame(nil, &protocol.Heartbeat{Seq: 7, ModelVersion: 3}, protocol.FlagRequest, 42, protocol.Limits{})
	if err != nil {
		panic(err)
	}
	f, m, err := protocol.DecodeMessage(frame, protocol.Limits{})
	if err != nil {
		panic(err)
	}
	hb := m.(*protocol.Heartbeat)
	fmt.Println(f.Type, f.ID, hb.Seq, hb.ModelVersion, len(frame), "bytes")
	// Output: Heartbeat 42 7 3 8 bytes
}

func ExampleUnmarshal_unknownOptional() {
	// A newer peer sent an optional type this build does not know: it is
	// skipped, not an error. An unknown mandatory type is an error.
	m, err := protocol.Unmarshal(protocol.Optional|0x70, []byte{1, 2}, protocol.Limits{})
	fmt.Println(m, err)
	_, err = protocol.Unmarshal(0x70, []byte{1, 2}, protocol.Limits{})
	fmt.Println(err)
	// Output:
	// <nil> <nil>
	// protocol.Unmarshal: protocol: unknown mandatory message type: type(0x70)
}

func ExampleNewBlobInfo() {
	blob := bytes.Repeat([]byte("fedge"), 2000) // 10,000 bytes
	info, err := protocol.NewBlobInfo("model/1", bytes.NewReader(blob), int64(len(blob)), 4096)
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Size, info.ChunkSize, info.NumChunks(), len(info.Chunks))
	// Output: 10000 4096 3 3
}
