package secagg

import "errors"

// Sentinel errors, for errors.Is. Every error returned by this package wraps
// one of them together with the name of the method that failed. A message
// rejected with any of them leaves the receiver's state unchanged, so the
// caller may drop the message and carry on with the stage.
var (
	// ErrInvalidConfig: the Config (or Quantizer) fails validation.
	ErrInvalidConfig = errors.New("secagg: invalid config")
	// ErrMalformed: bytes or fields that do not form a valid message for this
	// round (bad length, bad field element, missing entries, ...).
	ErrMalformed = errors.New("secagg: malformed message")
	// ErrForged: a signature or an authenticated ciphertext does not verify.
	ErrForged = errors.New("secagg: forged message")
	// ErrWrongRound: the message belongs to another round (a replay); its
	// round digest differs from this round's.
	ErrWrongRound = errors.New("secagg: message from another round")
	// ErrOutOfOrder: the message or call does not belong to the current stage
	// (a stage run twice, a late message, a stage skipped).
	ErrOutOfOrder = errors.New("secagg: out of order")
	// ErrWrongRecipient: the message is addressed to another party, or carries
	// an entry to or from a party that is not a neighbour in the graph.
	ErrWrongRecipient = errors.New("secagg: wrong recipient")
	// ErrUnknownSender: the sender is not a participant of this round, or not
	// one that is still expected at this stage.
	ErrUnknownSender = errors.New("secagg: unknown sender")
	// ErrDuplicate: a second message from the same sender in one stage, or a
	// repeated entry inside a message.
	ErrDuplicate = errors.New("secagg: duplicate")
	// ErrTooFewSurvivors: too few clients remain for the round to finish
	// without revealing an input; the round fails and reveals nothing.
	ErrTooFewSurvivors = errors.New("secagg: too few survivors")
	// ErrExcluded: the server declared this client dropped; it must stop.
	ErrExcluded = errors.New("secagg: client excluded from the round")
	// ErrBadShares: a reconstructed secret fails its integrity check (some
	// client sent wrong Shamir shares); the round fails.
	ErrBadShares = errors.New("secagg: inconsistent secret shares")
	// ErrOverflow: the quantizer's parameters could overflow the ring Z_(2^32)
	// for the number of summands, or an input is out of range.
	ErrOverflow = errors.New("secagg: ring overflow")
)
