package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

func tokensCommands() []command {
	return []command{
		{"create", "create a one-time join token for an agent", runTokensCreate},
		{"list", "list join tokens (never the tokens themselves)", runTokensList},
		{"revoke", "revoke an unused join token", runTokensRevoke},
	}
}

var tokensCreateSpec = cmdSpec{
	path: "tokens create",
	help: `Create a one-time join token an agent enrolls with. The token is printed
once: the cluster keeps only its hash. It expires after -ttl (default 24h, or
the cluster's maximum if shorter); a -ttl above the cluster's maximum
(max_token_ttl in the coordinator config, 7 days by default) is refused. The
labels given are attached to the agent that uses it (for round selection and
rollout cohorts). The creation is recorded in the audit trail with your name.
The output ends with the fedge agent command line to enroll a host.`,
	example: "fedge tokens create -labels region=eu,tier=canary -ttl 1h",
}

func runTokensCreate(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, tokensCreateSpec, true)
	labels := c.fs.String("labels", "", "labels of the agent that enrolls with the token: k=v,k=v")
	ttl := c.fs.Duration("ttl", 0, "how long the token stays valid (0: 24h, or the cluster's maximum if shorter)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *ttl < 0 {
		return c.usageFail(usagef("-ttl must not be negative"))
	}
	lm, err := parseLabels(*labels)
	if err != nil {
		return c.usageFail(err)
	}
	if len(lm) == 0 {
		lm = nil
	}
	req := api.TokenRequest{TTL: api.Duration(*ttl), Labels: lm}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.TokenResponse, error) {
		return cl.Tokens().Create(ctx, req)
	}, func(w io.Writer, r api.TokenResponse) error {
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

var tokensListSpec = cmdSpec{
	path: "tokens list",
	help: `List the join tokens the cluster holds: ID, the first bytes of the stored
hash of the secret, labels, who created it and when, expiry, and state
(valid, used, expired or revoked). A token itself is never shown: the
cluster does not have it. Used and expired tokens may be pruned.`,
	example: "fedge tokens list -json | jq -r '.[] | select(.state == \"valid\") | .id'",
}

func runTokensList(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, tokensListSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.Token, error) {
		return cl.Tokens().List(ctx, q)
	}, func(w io.Writer, toks []api.Token) error {
		if len(toks) == 0 {
			_, err := fmt.Fprintln(w, "No join tokens. Create one with `fedge tokens create`.")
			return err
		}
		t := newTable(w, "ID", "HASH", "STATE", "LABELS", "CREATED", "BY", "EXPIRES", "USED BY", "REVOKED BY")
		for _, k := range toks {
			t.row(k.ID, k.HashPrefix, k.State, labelString(k.Labels), when(k.CreatedAt), dash(k.CreatedBy), when(k.Expires), dash(k.UsedBy), dash(k.RevokedBy))
		}
		return t.flush()
	})
}

var tokensRevokeSpec = cmdSpec{
	path: "tokens revoke",
	args: "ID",
	help: `Revoke an unused join token: no agent can enroll with it any more. A token
already used cannot be revoked (revoke the agent that used it instead). The
revocation is recorded in the audit trail with your name.`,
	example: "fedge tokens revoke k3j5x2qa",
}

func runTokensRevoke(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, tokensRevokeSpec, true)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	req := api.IDRequest{ID: pos[0]}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	if err := c.call(context.Background(), func(ctx context.Context) error { return cl.Tokens().Revoke(ctx, req.ID) }); err != nil {
		return c.fail(err)
	}
	return render(c, req, func(w io.Writer, r api.IDRequest) error {
		_, err := fmt.Fprintf(w, "Revoked join token %s.\n", r.ID)
		return err
	})
}
