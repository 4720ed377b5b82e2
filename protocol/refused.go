package protocol

import (
	"errors"

	"github.com/quic-go/quic-go"
)

// HandshakeRefused reports whether err holds the peer's refusal of this
// end's TLS handshake: a TLS alert the remote side sent, such as
// bad_certificate for a revoked certificate or one of another cluster. A
// caller tells the user that its credential was refused, not that the
// peer is unreachable.
func HandshakeRefused(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError()
}
