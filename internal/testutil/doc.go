// Package testutil holds helpers shared by fedge's tests that are not API,
// such as locating the MNIST files shipped by the GoMNIST module.
package testutil
