// Package stagedriver is the server side of a round's stages: what a
// coordinator does between sending agents their work and holding the sum.
//
// A round moves through stages; in each, every agent still in the round
// sends one message, and the server answers each once all have arrived or
// the stage's deadline passed. Three types build on each other:
//
//   - Barrier is one stage: it hands messages to an accept function as
//     they arrive (so a stage that sums keeps none), closes at its deadline
//     or when full, and releases each agent with its own reply.
//   - Round routes an agent's message to the stage open now, and remembers
//     agents that left, so no later stage waits for them.
//   - SecAgg drives the five SecAgg+ stages (advertise keys, share keys,
//     masked input, consistency check, unmask) on a crypto/secagg Server:
//     it decodes each stage message, binds its sender to the authenticated
//     agent, ends the stage on the server, opens the next one before the
//     replies go out (so a fast agent's next message always finds it) and
//     answers with the relays.
//
// The coordinator's round engine runs every secure-aggregation round with
// SecAgg, and the agent package's tests drive their rounds through the
// same type, so both sides of the protocol are tested against one server.
// The package holds no network code: messages reach it through
// Round.Deliver from whatever transport the caller runs.
package stagedriver
