package protocol

// Default limits. They bound what a peer can make this process allocate; a
// zero field of Limits means the default named here.
const (
	// DefaultMaxFrame bounds one frame's body (16 MiB): every control
	// message and every bulk chunk fits in one frame.
	DefaultMaxFrame = 16 << 20
	// DefaultMaxString bounds every string field (4 KiB).
	DefaultMaxString = 4 << 10
	// DefaultMaxCert bounds certificate and CSR DER fields (64 KiB).
	DefaultMaxCert = 64 << 10
	// DefaultMaxAdminBody bounds an admin request or response body (1 MiB).
	DefaultMaxAdminBody = 1 << 20
	// DefaultMaxList bounds the number of entries of every list or map
	// field (65,536).
	DefaultMaxList = 1 << 16
	// DefaultChunkSize is the bulk transfer chunk size (1 MiB).
	DefaultChunkSize = 1 << 20
	// DefaultMaxBlob bounds one bulk transfer (8 GiB).
	DefaultMaxBlob = 8 << 30
	// MaxInlinePayload is the largest stage payload an agent sends inside
	// its stage message. A larger masked input (models above ~1M
	// parameters) goes first as a bulk blob, a MaskedUpdate upload
	// (chunked, hashed, resumable), and the MaskedInput message that
	// follows carries an empty payload that names it.
	MaxInlinePayload = 4 << 20
)

// minChunkSize keeps manifests short: a blob of MaxBlob bytes must not need
// more than MaxList chunk hashes at any accepted chunk size.
const minChunkSize = 4 << 10

// Limits bounds every length that arrives from the network. The zero value
// means the documented defaults; set a field to tighten or loosen one bound.
// Both sides check: encoders refuse to produce what a peer with the same
// limits would reject, decoders refuse (with an error, before allocating)
// anything longer.
type Limits struct {
	// MaxFrame bounds one frame's body in bytes. If zero, DefaultMaxFrame.
	MaxFrame int
	// MaxString bounds a string field in bytes. If zero, DefaultMaxString.
	MaxString int
	// MaxCert bounds a DER certificate or CSR field. If zero, DefaultMaxCert.
	MaxCert int
	// MaxAdminBody bounds AdminRequest.Body and AdminResponse.Body. If
	// zero, DefaultMaxAdminBody.
	MaxAdminBody int
	// MaxList bounds the entry count of a list or map field. If zero,
	// DefaultMaxList.
	MaxList int
	// MaxBlob bounds the size of one bulk transfer. If zero, DefaultMaxBlob.
	MaxBlob int64
}

// DefaultLimits returns the limits used when a Limits is left zero.
func DefaultLimits() Limits { return Limits{}.withDefaults() }

// withDefaults returns l with every zero (or negative) field replaced by its
// default.
func (l Limits) withDefaults() Limits {
	if l.MaxFrame <= 0 {
		l.MaxFrame = DefaultMaxFrame
	}
	if l.MaxString <= 0 {
		l.MaxString = DefaultMaxString
	}
	if l.MaxCert <= 0 {
		l.MaxCert = DefaultMaxCert
	}
	if l.MaxAdminBody <= 0 {
		l.MaxAdminBody = DefaultMaxAdminBody
	}
	if l.MaxList <= 0 {
		l.MaxList = DefaultMaxList
	}
	if l.MaxBlob <= 0 {
		l.MaxBlob = DefaultMaxBlob
	}
	return l
}
