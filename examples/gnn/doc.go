// Command gnn trains a graph convolutional network (Kipf and Welling 2017)
// federatedly: a synthetic node-classification graph (a stochastic block
// model whose classes show in both features and edges, tensor/data's
// SBMConfig) is cut into disjoint parts, one per agent (data.SplitGraph:
// edges between parts are lost, as when organisations each hold a piece of
// a graph); every round each agent trains the global GCN on its subgraph
// with tensor.TrainGraph, and the deltas, weighted by labelled nodes, are
// averaged under real SecAgg+ (examples/internal/fedsim) and added to the
// global model.
//
//	go run ./examples/gnn
//	go run ./examples/gnn -agents 8 -partition dirichlet -alpha 0.5
//
// It prints a line per round, then the accuracy on held-out nodes (never
// trained on) of three models: centralized training on the whole graph with
// every label, the federated model, and local-only models that each agent
// trains on its own part alone — measured both in the full graph and in the
// agents' own subgraphs, where each agent would use it.
package main
