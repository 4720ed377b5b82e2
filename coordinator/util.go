package coordinator

import (
	"bytes"
	"encoding/json"
)

// jsonUnmarshalStrict decodes JSON refusing unknown fields, so a typo in a
// job file is an error rather than a silently ignored setting.
func jsonUnmarshalStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
