// Package console is the web console a coordinator serves to operators:
// pages of the cluster, agents, jobs (with per-round charts), rounds,
// models and rollouts, and the actions that change them (start or stop a
// job, pause, resume, promote or roll back a rollout, revoke an agent),
// each behind a confirmation page.
//
// The console is a client of the admin API (coordinator/api) and nothing
// else: every page is built from the api answers the operator's CLI would
// get, so it shows nothing the coordinator does not hold, and every
// action is an admin call made as the operator who logged in (the audit
// trail and rollout decisions name "operator:<name> (console)"). A
// Backend carries the calls; the coordinator's node implements it with
// its own admin handler, forwarding to the leader what only the leader
// can answer or write.
//
// Access is for operators only. An operator mints a one-time login link
// with an admin certificate (`fedge console login`, the console.login
// admin call, Server.Login); opening it starts a session held in memory
// (cookie HttpOnly, SameSite=Strict, Secure over TLS), bounded by the
// session lifetime and the operator certificate's, and ended at once when
// that certificate is revoked. Every other path answers 401 without a
// session, and every action needs the session's CSRF token.
//
// Templates, stylesheet and the small script that refreshes a running
// job's page are embedded in the binary; the charts are SVG drawn on the
// server. There is no JavaScript library and nothing is loaded from
// elsewhere.
package console
