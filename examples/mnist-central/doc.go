// Command mnist-central trains one of the FedAvg paper's MNIST models (the
// "2nn" multilayer perceptron or the "cnn") centrally, on one machine, with
// fedge's tensor package: the baseline every federated run is compared to.
//
//	go run ./examples/mnist-central -model 2nn -epochs 5
//	go run ./examples/mnist-central -model cnn -epochs 3 -batch 50
//
// It prints, after every epoch, the mean training loss, the test accuracy on
// the 10,000 MNIST test images and the elapsed time, then the seed and the
// wall time. The MNIST files come from the GoMNIST module in the module
// cache, or from -data.
package main
