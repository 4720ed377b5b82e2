// Package secagg implements SecAgg+ (Bell et al. 2020): the secure
// aggregation protocol of Bonawitz et al. 2017 run on a random k-regular
// neighbour graph, so that a server learns only the sum of the clients'
// vectors and tolerates clients dropping out at any stage.
//
// It is a pure library: each stage is a function of state and messages; the
// caller moves the messages.
package secagg
