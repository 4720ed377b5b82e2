package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator"
)

func tokensCommands() []command {
	return []command{
		{"create", "create a one-time join token for an agent", runTokensCreate},
	}
}

var tokensCreateSpec = cmdSpec{
	path: "tokens create",
	help: `Create a one-time join token an agent enrolls with. The token is printed
once: the cluster keeps only its hash. It expires after -ttl, and the labels
given are attached to the agent that uses it (for round selection and rollout
cohorts). The output ends with the fedge agent command line to enroll a host.`,
	example: "fedge tokens create -labels region=eu,tier=canary -ttl 1h",
}

func runTokensCreate(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, tokensCreateSpec, true)
	labels := c.fs.String("labels", "", "labels of the agent that enrolls with the token: k=v,k=v")
	ttl := c.fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *ttl <= 0 {
		return c.usageFail(usagef("-ttl must be positive"))
	}
	lm, err := parseLabels(*labels)
	if err != nil {
		return c.usageFail(err)
	}
	if len(lm) == 0 {
		lm = nil
	}
	req := coordinator.TokenRequest{TTL: coordinator.Duration(*ttl), Labels: lm}
	return do(c, coordinator.VerbTokensCreate, req, func(w io.Writer, r coordinator.TokenResponse) error {
		addrs, _ := c.admin.addrs()
		fmt.Fprintln(w, "Join token (shown once; the cluster keeps only its hash):")
		fmt.Fprintf(w, "\n  %s\n\n", r.Token)
		if err := kv(w,
			"Token ID", r.ID,
			"Expires", fmt.Sprintf("%s (in %s)", when(r.Expires), time.Until(r.Expires).Round(time.Minute)),
			"Labels", labelString(lm),
		); err != nil {
			return err
		}
		fmt.Fprintln(w, "\nEnroll a host with (pick its data dir and local dataset):")
		_, err := fmt.Fprintf(w, "\n  fedge agent -coordinators %s -join-token %s -data-dir /var/lib/fedge/agent -dataset-kind csv -dataset-path /path/to/data.csv -label-column label\n",
			strings.Join(addrs, ","), r.Token)
		return err
	})
}
