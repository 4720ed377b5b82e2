package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
	"unicode/utf8"
)

// Errors returned by the codec. Decoding errors wrap one of them so callers
// can tell a malformed peer from a transport failure with errors.Is.
var (
	// ErrMalformed means the bytes do not follow the wire layout
	// (truncated field, bad varint, invalid boolean, trailing bytes,
	// invalid UTF-8, duplicate map key, ...).
	ErrMalformed = errors.New("protocol: malformed message")
	// ErrTooLarge means a length exceeds a configured Limits bound.
	ErrTooLarge = errors.New("protocol: length exceeds limit")
	// ErrUnknownType means a mandatory message type this build does not
	// know. Unknown optional types (high bit set) are skipped instead.
	ErrUnknownType = errors.New("protocol: unknown mandatory message type")
)

// HashSize is the size of every hash on the wire (SHA-256).
const HashSize = 32

// Hash is a SHA-256 digest. The zero Hash means "none".
type Hash [HashSize]byte

// IsZero reports whether h is the zero hash ("none").
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns the first 8 bytes in hex, enough for logs.
func (h Hash) String() string { return fmt.Sprintf("%x", h[:8]) }

// encoder appends fields to buf. The first error sticks; later calls are
// no-ops so message encoders can be written as straight-line code.
type encoder struct {
	buf []byte
	lim *Limits
	err error
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) uvarint(v uint64) {
	if e.err == nil {
		e.buf = binary.AppendUvarint(e.buf, v)
	}
}

func (e *encoder) varint(v int64) {
	if e.err == nil {
		e.buf = binary.AppendVarint(e.buf, v)
	}
}

func (e *encoder) u8(v uint8) {
	if e.err == nil {
		e.buf = append(e.buf, v)
	}
}

func (e *encoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func (e *encoder) f64(v float64) {
	if e.err == nil {
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(v))
	}
}

func (e *encoder) hash(h Hash) {
	if e.err == nil {
		e.buf = append(e.buf, h[:]...)
	}
}

func (e *encoder) str(field, s string) {
	if len(s) > e.lim.MaxString {
		e.fail(fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, field, len(s), e.lim.MaxString))
		return
	}
	if !utf8.ValidString(s) {
		e.fail(fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, field))
		return
	}
	e.uvarint(uint64(len(s)))
	if e.err == nil {
		e.buf = append(e.buf, s...)
	}
}

// bytes writes a length-prefixed byte field bounded by max.
func (e *encoder) bytes(field string, b []byte, max int) {
	if len(b) > max {
		e.fail(fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, field, len(b), max))
		return
	}
	e.uvarint(uint64(len(b)))
	if e.err == nil {
		e.buf = append(e.buf, b...)
	}
}

// listLen writes a list length after checking it against MaxList.
func (e *encoder) listLen(field string, n int) bool {
	if n > e.lim.MaxList {
		e.fail(fmt.Errorf("%w: %s has %d entries, limit %d", ErrTooLarge, field, n, e.lim.MaxList))
		return false
	}
	e.uvarint(uint64(n))
	return e.err == nil
}

// time writes t as Unix milliseconds; the zero time is written as 0.
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.varint(0)
		return
	}
	e.varint(t.UnixMilli())
}

// duration writes d as non-negative milliseconds.
func (e *encoder) duration(field string, d time.Duration) {
	if d < 0 {
		e.fail(fmt.Errorf("%w: %s is negative", ErrMalformed, field))
		return
	}
	e.uvarint(uint64(d / time.Millisecond))
}

// labels writes a string map in sorted key order so equal maps encode to
// equal bytes.
func (e *encoder) labels(field string, m map[string]string) {
	if !e.listLen(field, len(m)) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(field+" key", k)
		e.str(field+" value", m[k])
	}
}

// decoder reads fields from a frame body. Every read checks the remaining
// length before slicing or allocating; the first error sticks.
type decoder struct {
	b   []byte
	lim *Limits
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) malformed(field, what string) {
	d.fail(fmt.Errorf("%w: %s: %s", ErrMalformed, field, what))
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.malformed(field, "bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.malformed(field, "bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// u32 reads a uvarint that must fit in 32 bits.
func (d *decoder) u32(field string) uint32 {
	v := d.uvarint(field)
	if v > math.MaxUint32 {
		d.malformed(field, "exceeds 32 bits")
		return 0
	}
	return uint32(v)
}

func (d *decoder) u8(field string) uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.malformed(field, "truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) boolean(field string) bool {
	switch d.u8(field) {
	case 0:
		return false
	case 1:
		return true
	default:
		d.malformed(field, "boolean is neither 0 nor 1")
		return false
	}
}

func (d *decoder) f64(field string) float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.malformed(field, "truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) hash(field string) Hash {
	var h Hash
	if d.err != nil {
		return h
	}
	if len(d.b) < HashSize {
		d.malformed(field, "truncated")
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[HashSize:]
	return h
}

// length reads a length prefix and checks it against max and against the
// bytes that remain, before anything is allocated.
func (d *decoder) length(field string, max int) int {
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if n > uint64(max) {
		d.fail(fmt.Errorf("%w: %s claims %d bytes, limit %d", ErrTooLarge, field, n, max))
		return 0
	}
	if n > uint64(len(d.b)) {
		d.malformed(field, fmt.Sprintf("claims %d bytes, %d remain", n, len(d.b)))
		return 0
	}
	return int(n)
}

func (d *decoder) str(field string) string {
	n := d.length(field, d.lim.MaxString)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	if !utf8.ValidString(s) {
		d.malformed(field, "invalid UTF-8")
		return ""
	}
	return s
}

// bytes reads a length-prefixed byte field into a fresh slice (nil when
// empty) so the result does not alias the frame buffer.
func (d *decoder) bytes(field string, max int) []byte {
	n := d.length(field, max)
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b[:n])
	d.b = d.b[n:]
	return out
}

// listLen reads a list length. minEntry is the smallest encoding of one
// entry in bytes: a count that cannot fit in what remains is rejected
// before the caller allocates.
func (d *decoder) listLen(field string, minEntry int) int {
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if n > uint64(d.lim.MaxList) {
		d.fail(fmt.Errorf("%w: %s claims %d entries, limit %d", ErrTooLarge, field, n, d.lim.MaxList))
		return 0
	}
	if n*uint64(minEntry) > uint64(len(d.b)) {
		d.malformed(field, fmt.Sprintf("claims %d entries, %d bytes remain", n, len(d.b)))
		return 0
	}
	return int(n)
}

func (d *decoder) time(field string) time.Time {
	ms := d.varint(field)
	if d.err != nil || ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func (d *decoder) duration(field string) time.Duration {
	ms := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if ms > uint64(math.MaxInt64/int64(time.Millisecond)) {
		d.malformed(field, "duration overflows")
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func (d *decoder) labels(field string) map[string]string {
	n := d.listLen(field, 2)
	if d.err != nil || n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str(field + " key")
		v := d.str(field + " value")
		if d.err != nil {
			return nil
		}
		if i > 0 && k <= prev {
			d.malformed(field, "keys not strictly sorted")
			return nil
		}
		prev = k
		m[k] = v
	}
	return m
}

// finish reports trailing bytes: a message's layout is fixed, so anything
// left over is a malformed frame. A field added to an existing message in
// a later version goes in a trailer that its decode reads only when bytes
// remain (Heartbeat.Status, version 3); since an older peer's finish
// rejects it, senders write it only on sessions at that version.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b)))
	}
	return d.err
}
