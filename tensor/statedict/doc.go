// Package statedict maps an engine model's flat parameter vector to and
// from the tensors PyTorch would hold for the same architecture: the keys,
// shapes and memory layouts of the state_dict of an nn.Sequential whose
// modules are the Spec's layers, one module per layer, in order.
//
// Layer i of the Spec is module i of the Sequential, so its tensors are
// named "<i>.weight" and "<i>.bias":
//
//	fedge layer   PyTorch module             tensors (shapes)
//	dense         nn.Linear(in, units)       <i>.weight [units, in], <i>.bias [units]
//	conv2d        nn.Conv2d(C, F, K, S, P)   <i>.weight [F, C, K, K], <i>.bias [F]
//	gcnconv       torch_geometric GCNConv    <i>.lin.weight [units, in], <i>.bias [units]
//	relu          nn.ReLU                    none
//	maxpool2d     nn.MaxPool2d(K, S)         none
//	flatten       nn.Flatten                 none
//	dropout       nn.Dropout(rate)           none
//	standardize   a parameterless module     none: shift and scale are in the Spec
//	embedding_bag nn.EmbeddingBag(V, D, mode="mean")  <i>.weight [V, D] (padding: the Spec's PadID)
//
// For example the 2nn (flatten, dense 200, relu, dense 200, relu, dense
// 10) is nn.Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear) with
// "1.weight" [200, 784], "1.bias" [200], "3.weight" [200, 200], "3.bias",
// "5.weight" [10, 200], "5.bias" [10].
//
// The engine stores a dense layer's weights as [in, out] and a
// convolution's as [K·K·C, F] over channels-last activations; PyTorch
// stores [out, in] and [F, C, K, K] (OIHW) over channels-first ones, so a
// flatten after convolutions orders values by (c, h, w) in PyTorch and by
// (h, w, c) in the engine. The conversions transpose the weights and
// permute the rows of the first dense layer after such a flatten, so that
// both models compute the same function. They only move values: a round
// trip FromModel → ToModel is bit-exact.
package statedict
