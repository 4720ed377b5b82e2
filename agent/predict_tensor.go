package agent

import (
	"encoding/binary"
	"math"
	"net/http"
	"strconv"
)

// contentTypeTensor is the media type of a binary tensor body: the
// inputs as little-endian IEEE 754 float32 values, row after row, each
// row the model's number of input features in its input layout, with no
// header (the shape comes from the model: rows = bytes / (4 × features)).
const contentTypeTensor = "application/octet-stream"

// bodyKind sorts a predict request by its Content-Type: a binary tensor
// (contentTypeTensor), an image upload (imageUpload's kinds), or JSON
// (""). The common types are compared directly, without parsing.
func bodyKind(r *http.Request) string {
	switch ct := r.Header.Get("Content-Type"); ct {
	case "", "application/json":
		return ""
	case contentTypeTensor:
		return contentTypeTensor
	}
	return imageUpload(r)
}

// tensorSizeError is a binary tensor body that is not a whole number of
// rows.
type tensorSizeError struct{ size, rowBytes int }

func (e *tensorSizeError) Error() string {
	return "binary body of " + strconv.Itoa(e.size) + " bytes is not a whole number of rows of " +
		strconv.Itoa(e.rowBytes) + " bytes (the model's features as little-endian float32)"
}

// decodeTensor decodes a binary tensor body into dst and returns the
// number of rows of features values each.
func decodeTensor(dst []float32, body []byte, features int) ([]float32, int, error) {
	rowBytes := 4 * features
	if rowBytes == 0 || len(body)%rowBytes != 0 {
		return dst[:0], 0, &tensorSizeError{size: len(body), rowBytes: rowBytes}
	}
	k := len(body) / 4
	out := dst[:0]
	if cap(out) < k {
		out = make([]float32, 0, k)
	}
	out = out[:k]
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return out, k / features, nil
}
