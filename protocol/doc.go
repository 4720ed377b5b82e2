// Package protocol is the only way fedge processes talk to each other: the
// catalogue of wire messages, their explicit binary codec, the QUIC transport
// (one UDP port, ALPN per role) and the encodings that make model transfers
// small.
package protocol
