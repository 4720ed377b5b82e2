package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// route is one path of the console. Every route but /login needs a
// session; an action (a POST that changes the cluster) also needs the
// session's CSRF token and a same-origin request.
type route struct {
	method, pattern string
	action          bool
	json            bool // answers JSON (401s too)
	h               func(s *Server, q *request) error
}

// request is what a handler gets: the exchange, the session, and an api
// client that calls the cluster as the session's operator.
type request struct {
	w  http.ResponseWriter
	r  *http.Request
	ss *session
	c  *api.Client
}

// callTimeout bounds one page's calls to the cluster.
const callTimeout = 15 * time.Second

// routeTable lists every path the console serves besides GET /login.
var routeTable = []route{
	{method: "GET", pattern: "/{$}", h: (*Server).pageCluster},
	{method: "GET", pattern: "/agents", h: (*Server).pageAgents},
	{method: "GET", pattern: "/agents/{id}", h: (*Server).pageAgent},
	{method: "GET", pattern: "/agents/{id}/revoke", h: (*Server).confirmRevoke},
	{method: "POST", pattern: "/agents/{id}/revoke", action: true, h: (*Server).doRevoke},
	{method: "GET", pattern: "/jobs", h: (*Server).pageJobs},
	{method: "GET", pattern: "/jobs/new", h: (*Server).pageJobNew},
	{method: "POST", pattern: "/jobs/new", action: true, h: (*Server).doJobStart},
	{method: "GET", pattern: "/jobs/{id}", h: (*Server).pageJob},
	{method: "GET", pattern: "/jobs/{id}/live", h: (*Server).fragJobLive},
	{method: "GET", pattern: "/jobs/{id}/stop", h: (*Server).confirmJobStop},
	{method: "POST", pattern: "/jobs/{id}/stop", action: true, h: (*Server).doJobStop},
	{method: "GET", pattern: "/rounds/{id}", h: (*Server).pageRound},
	{method: "GET", pattern: "/models", h: (*Server).pageModels},
	{method: "GET", pattern: "/models/{version}", h: (*Server).pageModel},
	{method: "GET", pattern: "/models/{version}/export", h: (*Server).exportModel},
	{method: "GET", pattern: "/rollouts", h: (*Server).pageRollouts},
	{method: "GET", pattern: "/rollouts/{id}", h: (*Server).pageRollout},
	{method: "GET", pattern: "/rollouts/{id}/live", h: (*Server).fragRolloutLive},
	{method: "GET", pattern: "/rollouts/{id}/{action}", h: (*Server).confirmRollout},
	{method: "POST", pattern: "/rollouts/{id}/{action}", action: true, h: (*Server).doRollout},
	{method: "GET", pattern: "/audit", h: (*Server).pageAudit},
	{method: "POST", pattern: "/logout", action: true, h: (*Server).doLogout},
	{method: "GET", pattern: "/static/{file}", h: (*Server).static},
	{method: "GET", pattern: "/api/cluster", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, _ *http.Request) (any, error) {
		return c.Cluster().Status(ctx, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/agents", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, _ *http.Request) (any, error) {
		return c.Agents().List(ctx, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/jobs", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, _ *http.Request) (any, error) {
		return c.Jobs().List(ctx, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/jobs/{id}", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, r *http.Request) (any, error) {
		return c.Jobs().Status(ctx, r.PathValue("id"), api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/jobs/{id}/rounds", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, r *http.Request) (any, error) {
		return c.Rounds().List(ctx, api.RoundsRequest{Job: r.PathValue("id")}, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/rounds/{id}", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, r *http.Request) (any, error) {
		id, err := parseUint(r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return c.Rounds().Show(ctx, id, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/models", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, _ *http.Request) (any, error) {
		return c.Models().List(ctx, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/rollouts", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, _ *http.Request) (any, error) {
		return c.Rollouts().Status(ctx, api.QueryOptions{})
	})},
	{method: "GET", pattern: "/api/audit", json: true, h: apiJSON(func(ctx context.Context, c *api.Client, _ *http.Request) (any, error) {
		return c.Admins().Audit(ctx, api.AuditRequest{Limit: 500}, api.QueryOptions{})
	})},
}

// routes builds the console's handler: security headers on every
// answer, /login without a session, every other route behind one.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.handleLogin)
	for _, rt := range routeTable {
		mux.Handle(rt.method+" "+rt.pattern, s.guard(rt))
	}
	// Anything else: 401 without a session (so nothing tells a stranger
	// which paths exist), 404 with one.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if s.session(r) == nil {
			s.unauthorized(w, r, strings.HasPrefix(r.URL.Path, "/api/"))
			return
		}
		s.fail(w, r, nil, &httpError{code: http.StatusNotFound, msg: "no such page"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on form posts, which the CSRF check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// guard runs a route for a live session only, and an action only with
// the session's CSRF token from a same-origin page.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss := s.session(r)
		if ss == nil {
			s.unauthorized(w, r, rt.json)
			return
		}
		if rt.action {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if !sameOrigin(r) || !validCSRF(ss, r.PostFormValue("csrf")) {
				s.fail(w, r, ss, &httpError{code: http.StatusForbidden, msg: "the form is stale or came from another site (CSRF check): reload the page and try again"})
				return
			}
		}
		who := "operator:" + ss.op.Name + " (console)"
		q := &request{w: w, r: r, ss: ss, c: api.NewWithTransport(func(ctx context.Context, verb string, body []byte) ([]byte, error) {
			return s.be.Call(ctx, who, verb, body)
		})}
		if err := rt.h(s, q); err != nil {
			if rt.json {
				code, msg := errorStatus(err)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(code)
				json.NewEncoder(w).Encode(map[string]string{"error": msg})
				return
			}
			s.fail(w, r, ss, err)
		}
	})
}

// unauthorized answers a request without a session.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, asJSON bool) {
	w.Header().Set("WWW-Authenticate", `Cookie realm="fedge console"`)
	if asJSON {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, `{"error":"not logged in: run fedge console login"}`)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	s.pages.render(w, "unauthorized", view{Title: "Log in", Node: s.cfg.Node})
}

// handleLogin spends a login link and sends the browser to the cluster
// page with its session cookie.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	cookie, ss, ok := s.redeem(r.URL.Query().Get("token"))
	if !ok {
		s.log.Info("console login refused: unknown, spent or expired link", "remote", r.RemoteAddr)
		s.unauthorized(w, r, false)
		return
	}
	s.log.Info("console session opened", "operator", ss.op.Name, "remote", r.RemoteAddr, "expires", ss.expires)
	http.SetCookie(w, s.sessionCookie(cookie, ss.expires))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) doLogout(q *request) error {
	s.logout(q.r)
	http.SetCookie(q.w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.tls})
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	q.w.WriteHeader(http.StatusOK)
	return s.pages.render(q.w, "unauthorized", view{Title: "Logged out", Node: s.cfg.Node, Flash: "Logged out."})
}

func (s *Server) static(q *request) error {
	name := q.r.PathValue("file")
	b, err := fs.ReadFile(assets, "static/"+name)
	if err != nil {
		return &httpError{code: http.StatusNotFound, msg: "no such file"}
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		q.w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		q.w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	_, err = q.w.Write(b)
	return err
}

// apiJSON makes a JSON route of a read.
func apiJSON(fn func(ctx context.Context, c *api.Client, r *http.Request) (any, error)) func(*Server, *request) error {
	return func(s *Server, q *request) error {
		ctx, cancel := context.WithTimeout(q.r.Context(), callTimeout)
		defer cancel()
		out, err := fn(ctx, q.c, q.r)
		if err != nil {
			return err
		}
		q.w.Header().Set("Content-Type", "application/json")
		return json.NewEncoder(q.w).Encode(out)
	}
}

// httpError is an answer other than 200 with a message for the operator.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// errorStatus maps an error to the HTTP status and message shown.
func errorStatus(err error) (int, string) {
	var he *httpError
	var pe *protocol.Error
	var re *protocol.Redirect
	switch {
	case errors.As(err, &he):
		return he.code, he.msg
	case errors.As(err, &re):
		return http.StatusServiceUnavailable, "this coordinator cannot reach a leader right now; retry shortly"
	case errors.As(err, &pe) && pe.Code == protocol.CodeNotFound:
		return http.StatusNotFound, pe.Message
	case errors.As(err, &pe) && (pe.Code == protocol.CodeBadRequest || pe.Code == protocol.CodeUnsupported):
		return http.StatusBadRequest, pe.Message
	case errors.As(err, &pe) && pe.Code == protocol.CodeStarting:
		return http.StatusServiceUnavailable, "the coordinator is starting; retry shortly"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the cluster did not answer in time"
	}
	return http.StatusBadGateway, err.Error()
}

// fail renders an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	code, msg := errorStatus(err)
	if code >= 500 {
		s.log.Warn("console page failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	v := view{Title: http.StatusText(code), Node: s.cfg.Node, Data: msg}
	if ss != nil {
		v.Operator, v.CSRF = ss.op.Name, ss.csrf
	}
	s.pages.render(w, "error", v)
}

// page renders a full page for the session.
func (s *Server) page(q *request, name, title, nav string, data any) error {
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return s.pages.render(q.w, name, view{
		Title: title, Nav: nav, Node: s.cfg.Node, Operator: q.ss.op.Name, CSRF: q.ss.csrf,
		Flash: s.takeFlash(q.ss), Data: data,
	})
}

// fragment renders a part of a page (live updates).
func (s *Server) fragment(q *request, name string, data any) error {
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return s.pages.fragment(q.w, name, data)
}

// done sends the browser back to path after an action; the next page of
// the session shows msg (kept in the session, not the URL, so no link can
// put words in the console's mouth).
func (s *Server) done(q *request, path, msg string) error {
	s.mu.Lock()
	q.ss.flash = msg
	s.mu.Unlock()
	http.Redirect(q.w, q.r, path, http.StatusSeeOther)
	return nil
}

// takeFlash returns and forgets the session's message.
func (s *Server) takeFlash(ss *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := ss.flash
	ss.flash = ""
	return f
}

func parseUint(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("%q is not a number", s)}
	}
	return v, nil
}

// ctx is the context of one page's calls.
func (q *request) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(q.r.Context(), callTimeout)
}
