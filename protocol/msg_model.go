package protocol

import (
	"fmt"
)

// ModelAnnounce describes a global model version that is ready to download.
type ModelAnnounce struct {
	Version uint64
	// Hash names the model version: tensor.Model.Hash of its parameters
	// (what the receiver checks after decoding), not a hash of the bytes on
	// the wire.
	Hash Hash
	// Size is the encoded blob's size in bytes.
	Size uint64
	// Encoding names the blob's format: "fedge-model/1" is a tensor model
	// file; protocol/encoding names its codecs.
	Encoding string
	// BaseVersion is the version a delta encoding applies to (0 = full).
	BaseVersion uint64
	// Name is the model line of the version (version 5): a trailer
	// written only when set, and set only on sessions at version 5 or
	// later. Empty means the default line.
	Name string
}

// Type implements Message.
func (*ModelAnnounce) Type() MsgType { return TypeModelAnnounce }

func (m *ModelAnnounce) encode(e *encoder) {
	e.uvarint(m.Version)
	e.hash(m.Hash)
	e.uvarint(m.Size)
	e.str("Encoding", m.Encoding)
	e.uvarint(m.BaseVersion)
	if m.Name != "" {
		e.str("Name", m.Name)
	}
}

func (m *ModelAnnounce) decode(d *decoder) {
	m.Version = d.uvarint("Version")
	m.Hash = d.hash("Hash")
	m.Size = d.uvarint("Size")
	m.Encoding = d.str("Encoding")
	m.BaseVersion = d.uvarint("BaseVersion")
	if d.err == nil && len(d.b) > 0 {
		m.Name = d.str("Name")
	}
}

// ModelRequest opens a bulk stream to download a model; the server answers
// with BlobInfo and the chunks from Offset (see Session.FetchBlob).
type ModelRequest struct {
	Version uint64
	// HaveBase is the hash of a model the agent holds, so the server may
	// send a delta against it; zero asks for a full encoding.
	HaveBase Hash
	// Offset resumes an interrupted download; it must be a multiple of
	// the blob's chunk size.
	Offset uint64
}

// Type implements Message.
func (*ModelRequest) Type() MsgType { return TypeModelRequest }

func (m *ModelRequest) encode(e *encoder) {
	e.uvarint(m.Version)
	e.hash(m.HaveBase)
	e.uvarint(m.Offset)
}

func (m *ModelRequest) decode(d *decoder) {
	m.Version = d.uvarint("Version")
	m.HaveBase = d.hash("HaveBase")
	m.Offset = d.uvarint("Offset")
}

// BlobInfo is the manifest of a bulk transfer: the whole blob's SHA-256
// and the SHA-256 of every ChunkSize-aligned chunk, so a receiver checks
// each chunk as it lands and can resume at any chunk boundary.
type BlobInfo struct {
	// ID names the blob within its session ("model/42", "round/7/update").
	ID        string
	Size      uint64
	ChunkSize uint32
	Hash      Hash
	// Chunks holds ceil(Size/ChunkSize) hashes.
	Chunks []Hash
}

// Type implements Message.
func (*BlobInfo) Type() MsgType { return TypeBlobInfo }

// NumChunks returns ceil(Size/ChunkSize), or 0 when ChunkSize is 0.
func (m *BlobInfo) NumChunks() uint64 {
	if m.ChunkSize == 0 {
		return 0
	}
	return (m.Size + uint64(m.ChunkSize) - 1) / uint64(m.ChunkSize)
}

// validate checks the manifest's shape against the limits.
func (m *BlobInfo) validate(lim *Limits) error {
	if m.Size > uint64(lim.MaxBlob) {
		return fmt.Errorf("%w: blob of %d bytes, limit %d", ErrTooLarge, m.Size, lim.MaxBlob)
	}
	if m.ChunkSize < minChunkSize || uint64(m.ChunkSize) > uint64(maxChunk(lim)) {
		return fmt.Errorf("%w: chunk size %d outside [%d, %d]", ErrMalformed, m.ChunkSize, minChunkSize, maxChunk(lim))
	}
	if uint64(len(m.Chunks)) != m.NumChunks() {
		return fmt.Errorf("%w: %d chunk hashes for %d chunks", ErrMalformed, len(m.Chunks), m.NumChunks())
	}
	return nil
}

// maxChunk is the largest chunk that fits a frame with its offset.
func maxChunk(lim *Limits) int { return lim.MaxFrame - 16 }

func (m *BlobInfo) encode(e *encoder) {
	if err := m.validate(e.lim); err != nil {
		e.fail(fmt.Errorf("BlobInfo: %w", err))
		return
	}
	e.str("ID", m.ID)
	e.uvarint(m.Size)
	e.uvarint(uint64(m.ChunkSize))
	e.hash(m.Hash)
	if !e.listLen("Chunks", len(m.Chunks)) {
		return
	}
	for _, h := range m.Chunks {
		e.hash(h)
	}
}

func (m *BlobInfo) decode(d *decoder) {
	m.ID = d.str("ID")
	m.Size = d.uvarint("Size")
	m.ChunkSize = d.u32("ChunkSize")
	m.Hash = d.hash("Hash")
	n := d.listLen("Chunks", HashSize)
	if d.err != nil {
		return
	}
	if n > 0 {
		m.Chunks = make([]Hash, n)
		for i := range m.Chunks {
			m.Chunks[i] = d.hash("Chunks")
		}
	}
	if d.err == nil {
		if err := m.validate(d.lim); err != nil {
			d.fail(fmt.Errorf("BlobInfo: %w", err))
		}
	}
}

// BlobChunk is one chunk of a bulk transfer. On a bulk stream the data is
// written straight from the sender's buffer and read into the receiver's,
// without the per-message copy Unmarshal makes.
type BlobChunk struct {
	Offset uint64
	Data   []byte
}

// Type implements Message.
func (*BlobChunk) Type() MsgType { return TypeBlobChunk }

// The chunk layout: offset (uvarint) then the data to the end of the body.
func (m *BlobChunk) encode(e *encoder) {
	e.uvarint(m.Offset)
	if e.err == nil {
		e.buf = append(e.buf, m.Data...)
	}
}

func (m *BlobChunk) decode(d *decoder) {
	m.Offset = d.uvarint("Offset")
	if d.err == nil && len(d.b) > 0 {
		m.Data = append([]byte(nil), d.b...)
		d.b = d.b[len(d.b):]
	}
}

// BlobResume is the receiver's answer to an upload header: send the chunks
// from Offset (what it already holds verified).
type BlobResume struct {
	Offset uint64
}

// Type implements Message.
func (*BlobResume) Type() MsgType { return TypeBlobResume }

func (m *BlobResume) encode(e *encoder) { e.uvarint(m.Offset) }
func (m *BlobResume) decode(d *decoder) { m.Offset = d.uvarint("Offset") }

// AdminRequest is one operator command on ALPNAdmin. Body is the verb's
// JSON-encoded argument, bounded by Limits.MaxAdminBody.
type AdminRequest struct {
	Verb string
	Body []byte
}

// Type implements Message.
func (*AdminRequest) Type() MsgType { return TypeAdminRequest }

func (m *AdminRequest) encode(e *encoder) {
	e.str("Verb", m.Verb)
	e.bytes("Body", m.Body, e.lim.MaxAdminBody)
}

func (m *AdminRequest) decode(d *decoder) {
	m.Verb = d.str("Verb")
	m.Body = d.bytes("Body", d.lim.MaxAdminBody)
}

// AdminResponse is the JSON-encoded result of an AdminRequest (failures are
// an Error instead).
type AdminResponse struct {
	Body []byte
}

// Type implements Message.
func (*AdminResponse) Type() MsgType { return TypeAdminResponse }

func (m *AdminResponse) encode(e *encoder) { e.bytes("Body", m.Body, e.lim.MaxAdminBody) }
func (m *AdminResponse) decode(d *decoder) { m.Body = d.bytes("Body", d.lim.MaxAdminBody) }

// BlobGet opens a bulk stream between coordinators (fedge-peer/1) to
// fetch a content-addressed blob, such as a model version's bytes; the
// server answers like a ModelRequest, with BlobInfo and the chunks from
// Offset (version 5).
type BlobGet struct {
	// Hash is the SHA-256 of the blob's content, its name.
	Hash Hash
	// Offset resumes an interrupted fetch; a multiple of the chunk size.
	Offset uint64
}

// Type implements Message.
func (*BlobGet) Type() MsgType { return TypeBlobGet }

func (m *BlobGet) encode(e *encoder) {
	e.hash(m.Hash)
	e.uvarint(m.Offset)
}

func (m *BlobGet) decode(d *decoder) {
	m.Hash = d.hash("Hash")
	m.Offset = d.uvarint("Offset")
}

// BlobPut opens a bulk stream between coordinators (fedge-peer/1) to
// store a content-addressed blob on the receiver: the leader sends a
// model version's bytes this way before it commits the version. The
// receiver answers like a MaskedUpdate upload (BlobResume, chunks, Ack),
// so a broken transfer resumes; Blob.Hash is the blob's name (version 5).
type BlobPut struct {
	Blob BlobInfo
}

// Type implements Message.
func (*BlobPut) Type() MsgType { return TypeBlobPut }

func (m *BlobPut) encode(e *encoder) { m.Blob.encode(e) }

func (m *BlobPut) decode(d *decoder) { m.Blob.decode(d) }
