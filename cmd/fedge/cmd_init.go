package main

import (
	"crypto/rand"
	"encoding/hex"
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
admin verbs use. fedge init refuses to overwrite an existing cluster.

By default the seal key is written next to the sealed CA (tls/seal.key), so a
copy of that folder holds both. To keep them apart, give one of:
  -seal-key-out PATH     write the key to PATH only (outside the node folders)
  -print-seal-key        print the key once and write it nowhere
  -seal-passphrase-file  seal the CA under a passphrase (argon2id), read from
                         the file's first line (or from FEDGE_SEAL_PASSPHRASE)
Then start each coordinator with FEDGE_SEAL_KEY, seal_key_file, or
FEDGE_SEAL_PASSPHRASE / seal_passphrase_file (see fedge coordinator -h).`,
	example: `fedge init -cluster demo -peers c1=127.0.0.1:7001,c2=127.0.0.1:7002,c3=127.0.0.1:7003 -out ./cluster
fedge coordinator -config ./cluster/c1/coordinator.json
fedge init -cluster prod -peers c1=10.0.0.1:7001 -out ./prod -seal-key-out /secure/prod-seal.key`,
}

// envSealKey and envSealPassphrase carry the seal secret to fedge init and
// fedge coordinator without writing it next to the CA.
const (
	envSealKey        = "FEDGE_SEAL_KEY"
	envSealPassphrase = "FEDGE_SEAL_PASSPHRASE"
)

// readPassphraseFile returns the first line of path.
func readPassphraseFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return nil, usagef("%s: empty passphrase", path)
	}
	return []byte(line), nil
}

func runInit(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, initSpec, false)
	name := c.fs.String("cluster", "", "cluster name (recorded in the CA certificate)")
	peersFlag := c.fs.String("peers", "", "initial voters: id=host:port,... (1, 3 or 5 of them)")
	out := c.fs.String("out", "", "folder to write the credentials into")
	keyOut := c.fs.String("seal-key-out", "", "write the seal key to this file (outside the node folders) instead of into each tls/")
	printKey := c.fs.Bool("print-seal-key", false, "print the seal key once instead of writing it into each tls/")
	passFile := c.fs.String("seal-passphrase-file", "", "seal the CA under the passphrase on this file's first line (argon2id); no key is written (or set "+envSealPassphrase+")")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	var opt coordinator.InitOptions
	if *passFile != "" {
		p, err := readPassphraseFile(*passFile)
		if err != nil {
			return c.fail(err)
		}
		opt.Passphrase = p
	} else if p := os.Getenv(envSealPassphrase); p != "" {
		opt.Passphrase = []byte(p)
	}
	n := 0
	for _, set := range []bool{*keyOut != "", *printKey, opt.Passphrase != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return c.usageFail(usagef("-seal-key-out, -print-seal-key and a passphrase exclude each other"))
	}
	opt.SealKeyOutside = *keyOut != "" || *printKey
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
	if *keyOut != "" {
		abs, err := filepath.Abs(*keyOut)
		if err != nil {
			return c.fail(err)
		}
		for _, id := range peerIDs(peers) {
			if rel, err := filepath.Rel(filepath.Join(dir, id), abs); err == nil && !strings.HasPrefix(rel, "..") {
				return c.usageFail(usagef("-seal-key-out %s is inside node %s's folder: keep the key apart from the CA", *keyOut, id))
			}
		}
		if _, err := os.Stat(abs); err == nil {
			return c.fail(fmt.Errorf("%s already exists: refusing to overwrite a seal key", abs))
		}
		*keyOut = abs
	}
	key, err := coordinator.InitClusterWith(rand.Reader, *name, peers, dir, time.Now(), opt)
	if err != nil {
		return c.fail(err)
	}
	if *keyOut != "" {
		if err := os.MkdirAll(filepath.Dir(*keyOut), 0o700); err != nil {
			return c.fail(err)
		}
		if err := coordinator.WriteFileAtomic(*keyOut, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return c.fail(err)
		}
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
	switch {
	case *keyOut != "":
		fmt.Fprintf(w, "\nThe seal key is in %s only (not in the node folders). Give it to each coordinator\n", *keyOut)
		fmt.Fprintf(w, "apart from its folder: seal_key_file in its config, -seal-key-file, or %s.\n", envSealKey)
	case *printKey:
		fmt.Fprintf(w, "\nSeal key (shown once; it is written nowhere, store it in your secret store):\n\n  %s\n\n", hex.EncodeToString(key))
		fmt.Fprintf(w, "Give it to each coordinator as %s (or in a seal_key_file outside its data dir).\n", envSealKey)
	case opt.Passphrase != nil:
		fmt.Fprintf(w, "\nThe CA is sealed under your passphrase; no key was written. Give it to each\n")
		fmt.Fprintf(w, "coordinator as %s or in a seal_passphrase_file outside its data dir.\n", envSealPassphrase)
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
