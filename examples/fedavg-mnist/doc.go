// Command fedavg-mnist reproduces the MNIST experiment of the FedAvg paper
// (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
// from Decentralized Data", Table 2): 100 clients of 600 examples, 10 of
// them (C = 0.1) picked at random each round, one local epoch (E = 1) of SGD
// with minibatches of 10 (B = 10) on the "2nn" (784-200-200-10, 199,210
// parameters), and the server adds the example-weighted mean of the clients'
// deltas to the global model, until the test accuracy reaches 97%.
//
//	go run ./examples/fedavg-mnist -partition iid -secagg
//	go run ./examples/fedavg-mnist -partition pathological -secagg -rounds 1500
//	go run ./examples/fedavg-mnist -partition iid -secagg -compress int8
//	go run ./examples/fedavg-mnist -table
//
// The rounds are simulated in one process — no network — but every part that
// touches the numbers is the system's: local training is tensor.Train, the
// partitions are tensor/data's, aggregation is real SecAgg+ (crypto/secagg:
// each client with its own Ed25519 identity, the five stages, messages through
// their wire encodings, inputs quantized like the coordinator's: clip 1,
// 16 bits, weight = example count capped at 1024) or, with -secagg off, the
// coordinator's plain weighted mean; -compress makes clients start each
// round from the model as the download encoding (protocol/encoding) delivers
// it; -dropout makes selected clients vanish mid-protocol (SecAgg+ recovers
// their masks, or the round fails as the coordinator's would) and
// -overselect picks more clients to compensate. It prints a line per round (test accuracy, mean training loss,
// survivors, bytes, seconds) and the round at which the target was reached,
// and writes the curve as CSV and a PNG plot into -out (docs/fedavg by
// default). -table runs IID and pathological non-IID with SecAgg off and on,
// and IID with int8 downloads, and prints a Markdown table next to the
// paper's 87 (IID) and 664 (non-IID) rounds.
package main
