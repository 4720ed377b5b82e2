// Command fedge is fedge's one binary: `fedge coordinator` and `fedge agent`
// run the daemons, the other verbs are the admin CLI. main.go only parses
// the verb and wires; each command lives in its own file.
package main
