package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator"
)

// coordinatorConfigFile is the name of the node configuration fedge init
// writes into each node's folder.
const coordinatorConfigFile = "coordinator.json"

var initSpec = cmdSpec{
	path: "init",
	help: `Create a new cluster: its certificate authority, the credentials of each
coordinator named in -peers, and a first operator credential. Each node gets
a folder DIR/<node> holding tls/ (its certificate, the CA certificate and the
CA key sealed under a seal key) and a coordinator.json to start it with; copy
each folder to its host only. DIR/admin holds the operator credential the
admin verbs use. fedge init refuses to overwrite an existing cluster.`,
	example: `fedge init -cluster demo -peers c1=127.0.0.1:7001,c2=127.0.0.1:7002,c3=127.0.0.1:7003 -out ./cluster
fedge coordinator -config ./cluster/c1/coordinator.json`,
}

func runInit(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, initSpec, false)
	name := c.fs.String("cluster", "", "cluster name (recorded in the CA certificate)")
	peersFlag := c.fs.String("peers", "", "initial voters: id=host:port,... (1, 3 or 5 of them)")
	out := c.fs.String("out", "", "folder to write the credentials into")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	switch {
	case *name == "":
		return c.usageFail(usagef("-cluster is required"))
	case *peersFlag == "":
		return c.usageFail(usagef("-peers is required"))
	case *out == "":
		return c.usageFail(usagef("-out is required"))
	}
	peers, err := coordinator.ParsePeers(*peersFlag)
	if err != nil {
		return c.usageFail(err)
	}
	seen := map[string]bool{}
	for _, p := range peers {
		if seen[p.ID] || p.ID == "admin" {
			return c.usageFail(usagef("-peers: node id %q is repeated or reserved", p.ID))
		}
		seen[p.ID] = true
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return c.fail(err)
	}
	for _, sub := range append([]string{"admin"}, peerIDs(peers)...) {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			return c.fail(fmt.Errorf("%s already exists: refusing to overwrite a cluster's credentials", filepath.Join(dir, sub)))
		}
	}
	if err := coordinator.InitCluster(rand.Reader, *name, peers, dir, time.Now()); err != nil {
		return c.fail(err)
	}
	var configs []string
	for _, p := range peers {
		path, err := writeNodeConfig(dir, p.ID, peers)
		if err != nil {
			return c.fail(err)
		}
		configs = append(configs, path)
	}

	w := stdout
	fmt.Fprintf(w, "Created cluster %q in %s\n\n", *name, dir)
	fmt.Fprintf(w, "  %s/  operator credential (ca.pem, admin.pem, admin.key)\n", filepath.Join(dir, "admin"))
	for i, p := range peers {
		fmt.Fprintf(w, "  %s/  node %s: tls/ and %s\n", filepath.Join(dir, p.ID), p.ID, filepath.Base(configs[i]))
	}
	fmt.Fprintln(w, "\nCopy each node's folder to its host (it holds the sealed CA key), then start each coordinator:")
	for _, path := range configs {
		fmt.Fprintf(w, "  fedge coordinator -config %s\n", path)
	}
	fmt.Fprintln(w, "\nThen talk to the cluster with the operator credential:")
	fmt.Fprintf(w, "  export %s=%s\n", envCoordinators, strings.Join(peerAddrs(peers), ","))
	fmt.Fprintf(w, "  export %s=%s\n", envAdminDir, filepath.Join(dir, "admin"))
	fmt.Fprintln(w, "  fedge cluster status")
	return exitOK
}

// writeNodeConfig writes DIR/<id>/coordinator.json for one voter and
// returns its path.
func writeNodeConfig(dir, id string, peers []coordinator.Peer) (string, error) {
	var self coordinator.Peer
	for _, p := range peers {
		if p.ID == id {
			self = p
		}
	}
	cfg := coordinatorFile{Config: coordinator.Config{
		NodeID: id, DataDir: filepath.Join(dir, id), Listen: self.Addr, Peers: peers,
	}, LogFormat: "text", LogLevel: "info"}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, id, coordinatorConfigFile)
	if err := coordinator.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("init: %w", err)
	}
	return path, nil
}

func peerIDs(peers []coordinator.Peer) []string {
	out := make([]string, len(peers))
	for i, p := range peers {
		out[i] = p.ID
	}
	return out
}

func peerAddrs(peers []coordinator.Peer) []string {
	out := make([]string, len(peers))
	for i, p := range peers {
		out[i] = p.Addr
	}
	return out
}
