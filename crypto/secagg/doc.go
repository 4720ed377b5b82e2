// Package secagg implements SecAgg+ (Bell et al. 2020): the secure
// aggregation protocol of Bonawitz et al. 2017 run on a random k-regular
// neighbour graph, so that a server learns only the sum of the clients'
// vectors and tolerates clients dropping out at any stage.
//
// It is a pure library: each stage is a function of state and messages; the
// caller moves the messages. The coordinator's round engine drives a Server,
// each agent drives a Client, and the protocol package carries the encoded
// messages (MarshalBinary/UnmarshalBinary) opaquely.
//
// # Round
//
// All parties hold the same Config (round ID, participants with their
// Ed25519 identity keys, k, t, D, graph seed, optional Quantizer); its
// SHA-256 digest is carried by every message and bound into every signature,
// key derivation and AEAD associated data, so messages from another round
// are rejected (ErrWrongRound, or ErrForged if relabelled). The neighbour
// graph is a Harary graph on a ring permuted from the public GraphSeed
// (k = n-1 gives classic SecAgg). Stages, client -> server, and the
// server's reply to each client:
//
//  0. AdvertiseKeys: two fresh X25519 public keys (c for encryption, s for
//     masking) and a commitment to the self-mask seed b, signed.
//     Reply KeyList: the neighbours' advertisements.
//  1. ShareKeys: t-of-(k+1) Shamir shares (GF(2^61-1)) of s_sk and b, one
//     pair per neighbour, AES-256-GCM encrypted under
//     HKDF-SHA256(X25519(c_sk, c_pk')). Reply ShareList: the ciphertexts
//     addressed to the client.
//  2. MaskedInput: y = x + PRG(b) + sum_v +-PRG(s_uv) mod 2^32 over the
//     neighbours v that shared keys; s_uv = HKDF(X25519(s_sk, s_pk_v)), the
//     smaller ID adds, the larger subtracts; PRG is AES-128-CTR. The server
//     adds y into one running sum. Reply SurvivorList: U3.
//  3. ConsistencyCheck: a signature on U3. Reply SignatureList: the
//     neighbours' signatures; a client needs t-1 valid ones.
//  4. Unmask: per neighbour, the share of b if it survived, of s_sk if it
//     dropped, never both (the client answers once; the server refuses
//     anything else). Server.Finish rebuilds the secrets, checks them
//     against the advertised s_pk and seed commitment (ErrBadShares),
//     removes the masks and returns the sum of exactly the survivors' inputs.
//
// # Dropouts and thresholds
//
// A client's secrets are held by it and its k neighbours; t of them must
// answer at the end. The server drops, after stages 0 and 1, every client
// with fewer than t-1 live neighbours (its secrets could never be rebuilt),
// and fails the round with ErrTooFewSurvivors, revealing nothing, as soon
// as fewer than MinSurvivors clients remain or a needed secret can no
// longer reach t holders. Classic SecAgg (k = n-1) thus survives any n-t
// dropouts; with small k the tolerance is per neighbourhood.
//
// t must be a majority of a neighbourhood (2t > k+1): the honest holders
// that reveal a client's b and those that reveal its s_sk then cannot both
// reach t, which together with the signed survivor set is what keeps a
// server that lies about dropouts from unmasking a single input (Bonawitz
// et al. section 4; Bell et al. choose k = O(log n) for a given fraction of
// corrupt clients and failure probability: take k from their tables when
// the defaults, k = 2*ceil(log2 n) and t = (k+1)/2 + 1, are not enough).
// MaskedInput is not signed: the transport (mutual TLS) authenticates its
// sender, and the server could alter the sum anyway; integrity of the
// result against a malicious server is outside SecAgg's guarantees.
//
// # Errors
//
// Every error wraps a sentinel (ErrForged, ErrWrongRound, ErrMalformed,
// ErrOutOfOrder, ErrWrongRecipient, ErrUnknownSender, ErrDuplicate,
// ErrTooFewSurvivors, ErrExcluded, ErrBadShares, ErrInvalidConfig,
// ErrOverflow). A rejected message leaves the Client or Server unchanged;
// only ErrTooFewSurvivors and ErrBadShares from End*/Finish end the round.
//
// # Encoding
//
// Quantizer maps float32 vectors into Z_(2^32): clipping to [-c, c],
// unbiased stochastic rounding to b bits, and the client's weight (example
// count) in an extra coordinate, scaled so the server can compute a
// weighted mean; Check(n) refuses parameters that could overflow with n
// summands.
//
// Mask expansion runs at several GB/s per core (SSE2 kernels on amd64) and
// uses all GOMAXPROCS cores for large vectors; Client and Server are not
// safe for concurrent use, and no goroutine outlives a call.
package secagg
