package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
)

func adminsCommands() []command {
	return []command{
		{"list", "list operator certificates the cluster issued", runAdminsList},
		{"revoke", "revoke operator certificates", runAdminsRevoke},
		{"audit", "show the audit trail of token and admin actions", runAdminsAudit},
	}
}

var adminsListSpec = cmdSpec{
	path: "admins list",
	help: `List the operator certificates the cluster knows: the one fedge init
issued, every one issued since with fedge admin-cert (and who asked for it),
and certificates revoked by serial. Any operator may issue and revoke admin
certificates; each such action is recorded and shown by fedge admins audit.`,
	example: "fedge admins list -json | jq -r '.[] | select(.revoked | not) | .name'",
}

func runAdminsList(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, adminsListSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.Admin, error) {
		return cl.Admins().List(ctx, q)
	}, func(w io.Writer, admins []api.Admin) error {
		if len(admins) == 0 {
			_, err := fmt.Fprintln(w, "No recorded operator certificates (clusters created before admin records list only those issued since).")
			return err
		}
		t := newTable(w, "NAME", "SERIAL", "CREATED", "BY", "EXPIRES", "REVOKED", "REVOKED BY")
		for _, a := range admins {
			name := dash(a.Name)
			if a.Unrecorded {
				name = "(unrecorded)"
			}
			t.row(name, a.Serial, when(a.CreatedAt), dash(a.CreatedBy), when(a.Expires), yes(a.Revoked), dash(a.RevokedBy))
		}
		return t.flush()
	})
}

var adminsRevokeSpec = cmdSpec{
	path: "admins revoke",
	args: "NAME | -serial HEX",
	help: `Revoke operator certificates: every recorded certificate of NAME, or the one
certificate with -serial (as admins list or admin-cert print it; a serial the
cluster never recorded, such as the credential of a cluster created before
admins were recorded, is revoked too). A revoked certificate is refused at the
next TLS handshake and on any session it still has open. Revoking the
certificate you are using locks you out: keep another operator credential.`,
	example: "fedge admins revoke alice\nfedge admins revoke -serial 5f3a9c0e21d4b7a8",
}

func runAdminsRevoke(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, adminsRevokeSpec, true)
	serial := c.fs.String("serial", "", "revoke the certificate with this serial (hex) instead of by name")
	pos, code, ok := c.parse(args, 0, 1)
	if !ok {
		return code
	}
	req := api.AdminRevokeRequest{Serial: normalSerial(*serial)}
	switch {
	case len(pos) == 1 && *serial != "":
		return c.usageFail(usagef("give a NAME or -serial, not both"))
	case len(pos) == 1:
		req.Name = pos[0]
	case *serial == "":
		return c.usageFail(usagef("missing argument: want NAME or -serial HEX"))
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.AdminRevokeResponse, error) {
		return cl.Admins().Revoke(ctx, req)
	}, func(w io.Writer, r api.AdminRevokeResponse) error {
		if len(r.Revoked) == 0 {
			_, err := fmt.Fprintln(w, "Nothing to revoke: already revoked.")
			return err
		}
		_, err := fmt.Fprintf(w, "Revoked admin certificate(s) %s.\n", strings.Join(r.Revoked, ", "))
		return err
	})
}

var adminsAuditSpec = cmdSpec{
	path: "admins audit",
	help: `Show the audit trail of credential actions, oldest first: join tokens created
and revoked, admin certificates issued (by fedge init or an operator) and
revoked, with who did it and when. Each record is committed through Raft with
the action itself; the cluster keeps the last 10,000 or so.`,
	example: "fedge admins audit -limit 20",
}

func runAdminsAudit(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, adminsAuditSpec, true)
	limit := c.fs.Int("limit", 0, "show only the last N records (0: all)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *limit < 0 {
		return c.usageFail(usagef("-limit must not be negative"))
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.AuditEntry, error) {
		return cl.Admins().Audit(ctx, api.AuditRequest{Limit: *limit}, q)
	}, func(w io.Writer, recs []api.AuditEntry) error {
		if len(recs) == 0 {
			_, err := fmt.Fprintln(w, "No audit records.")
			return err
		}
		t := newTable(w, "AT", "BY", "ACTION", "TARGET", "DETAIL")
		for _, r := range recs {
			t.row(when(r.At), dash(r.By), r.Action, r.Target, dash(r.Detail))
		}
		return t.flush()
	})
}

// normalSerial accepts a serial as admins list prints it or as
// "openssl x509 -serial" does (serial=0A1B..., upper case, leading zeros).
func normalSerial(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "serial="), "0x")
	s = strings.TrimLeft(strings.ToLower(s), "0")
	return s
}
