// Package agent is the daemon that runs on an enterprise host: it enrolls with
// the cluster, keeps its identity and models in a local store, trains on local
// data when a round asks, and serves inference from the current model.
package agent
