// Package fedge is the root of the fedge module: a federated learning system
// whose edge agents train on private data and whose Raft-replicated
// coordinators aggregate their updates under secure aggregation. The root
// package holds no code; its tests check the architecture rules of
// docs/DESIGN.md (package doc comments, import directions).
package fedge
