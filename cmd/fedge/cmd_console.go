package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

func consoleCommands() []command {
	return []command{
		{"login", "mint a one-time login link to a coordinator's web console", runConsoleLogin},
	}
}

var consoleLoginSpec = cmdSpec{
	path: "console login",
	help: `Print a one-time login link to the web console of the coordinator this
command reaches (the first of -coordinators that answers; that coordinator
must run with -ui-listen). The link is bound to your admin certificate: the
console acts as you, names you in the audit trail, and ends your session
when the certificate expires or is revoked. Open the link in a browser
within -ttl (default 2m, at most 10m); it works once.`,
	example: "fedge console login -coordinators 127.0.0.1:7001",
}

func runConsoleLogin(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, consoleLoginSpec, true)
	ttl := c.fs.Duration("ttl", 0, "how long the link stays valid; 0 means 2m, at most 10m")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, _ api.QueryOptions) (api.ConsoleLoginResponse, error) {
		return cl.Console().Login(ctx, api.ConsoleLoginRequest{TTL: api.Duration(*ttl)})
	}, func(w io.Writer, r api.ConsoleLoginResponse) error {
		_, err := fmt.Fprintf(w, "Open within %s (once) the console of coordinator %s:\n\n  %s\n",
			time.Until(r.Expires).Round(time.Second), r.Node, r.URL)
		return err
	})
}
