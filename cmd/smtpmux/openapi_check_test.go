package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/smtpmux/smtpmux/admin/openapi"
)

// The end-to-end suite checks every API call it makes against the OpenAPI
// document the daemon serves (admin/openapi/openapi.json): the request it
// sends and the answer it gets, status and headers included. The document
// cannot drift from the code without this failing.

// apiSpec is the document, loaded and routed once per test process.
var apiSpec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

func loadAPISpec() (*openapi3.T, routers.Router, error) {
	apiSpec.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON)
		if err == nil {
			err = doc.Validate(context.Background())
		}
		if err != nil {
			apiSpec.err = err
			return
		}
		apiSpec.doc = doc
		apiSpec.router, apiSpec.err = legacy.NewRouter(doc)
	})
	return apiSpec.doc, apiSpec.router, apiSpec.err
}

// bearerPresent is the document's security check: the daemon decides
// whether a credential is good (and the document covers its 401); the
// request is well-formed as long as it carries one.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") || len(h) == len("Bearer ") {
		return errNoBearer
	}
	return nil
}

type authError string

func (e authError) Error() string { return string(e) }

const errNoBearer = authError("no Bearer credential")

// checkAPI validates one exchange with the daemon's HTTP API against the
// document and reports mismatches with t.Errorf. req must be the request
// as sent, reqBody its body; resp's body has been read into respBody.
// badRequest marks a request a test sends malformed on purpose (a hostile
// or bad-input test): its request is not checked, but its answer still is,
// against the operation it names or, for a path or method the API does not
// have, against the error envelope. Requests that leave out a required
// credential count as invalid, so a test probing a 401 must say badRequest.
func checkAPI(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte, badRequest bool) {
	t.Helper()
	doc, router, err := loadAPISpec()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	where := req.Method + " " + req.URL.RequestURI()
	route, params, err := router.FindRoute(req)
	if err != nil {
		if !badRequest {
			t.Errorf("openapi: %s (answered %d): the document has no such operation: %v", where, resp.StatusCode, err)
		}
		if resp.StatusCode < 400 {
			t.Errorf("openapi: %s: an undocumented operation answered %d", where, resp.StatusCode)
			return
		}
		var v any
		if err := json.Unmarshal(respBody, &v); err != nil {
			t.Errorf("openapi: %s: %d answer is not JSON: %q", where, resp.StatusCode, respBody)
			return
		}
		if err := doc.Components.Schemas["ErrorEnvelope"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020(),
			openapi3.SetSchemaErrorMessageCustomizer(shortSchemaError)); err != nil {
			t.Errorf("openapi: %s: %d answer is not the error envelope: %v", where, resp.StatusCode, err)
		}
		return
	}
	// Validation reads the body; give it a copy.
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	reqOpts := &openapi3filter.Options{AuthenticationFunc: bearerPresent, MultiError: true}
	reqOpts.WithCustomSchemaErrorFunc(shortSchemaError)
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: reqOpts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && !badRequest {
		t.Errorf("openapi: request %s (answered %d) does not match the document: %v", where, resp.StatusCode, err)
	}
	// The request checks are done; the answer is checked against the
	// operation whatever the request was.
	in.Options = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in.Options.WithCustomSchemaErrorFunc(shortSchemaError)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: in.Options,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("openapi: answer %d to %s does not match the document: %v\nbody: %.2000s", resp.StatusCode, where, err, respBody)
	}
}

// shortSchemaError renders a schema mismatch as where and why, without the
// schema dump kin-openapi appends by default (pages per error).
func shortSchemaError(err *openapi3.SchemaError) string {
	return "at /" + strings.Join(err.JSONPointer(), "/") + ": " + err.Reason
}

// errRecorder is a testing.TB that records Errorf instead of failing, to
// test checkAPI itself.
type errRecorder struct {
	testing.TB
	errs []string
}

func (r *errRecorder) Helper() {}
func (r *errRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckAPICatchesDrift shows that checkAPI reports an answer, a
// request and an operation that the document does not describe, and
// accepts ones it does: without this, a validator that silently checked
// nothing would look like a suite in sync with its document.
func TestCheckAPICatchesDrift(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"req_abc"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	rate := []string{"X-RateLimit-Limit", "600", "X-RateLimit-Remaining", "599", "X-RateLimit-Reset", "60"}
	group := `{"ok":true,"data":{"id":"dgrp_abc","name":"g","description":null,"provider_ids":[],` +
		`"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00Z"},"meta":{"request_id":"req_abc"}}`
	notFound := `{"ok":false,"error":{"code":"not_found","message":"no such endpoint","retryable":false},"meta":{"request_id":"req_abc"}}`
	cases := []struct {
		name, method, path, reqBody string
		bad                         bool
		status                      int
		header                      http.Header
		body                        string
		wantErr                     string // "" = no report
	}{
		{"documented answer", "GET", "/api/v1/delivery-groups/dgrp_abc", "", false, 200,
			hdr(append(rate, "ETag", `W/"1"`)...), group, ""},
		{"missing ETag", "GET", "/api/v1/delivery-groups/dgrp_abc", "", false, 200, hdr(rate...), group, "ETag"},
		{"renamed field", "GET", "/api/v1/delivery-groups/dgrp_abc", "", false, 200, hdr(append(rate, "ETag", `W/"1"`)...),
			strings.Replace(group, `"provider_ids"`, `"providers"`, 1), "does not match"},
		{"undocumented status", "GET", "/api/v1/delivery-groups/dgrp_abc", "", false, 418, hdr(rate...), notFound, "does not match"},
		{"unknown body member", "POST", "/api/v1/delivery-groups", `{"name":"g","colour":"red"}`, false, 404, hdr(rate...), notFound, "request"},
		{"unknown member, marked bad", "POST", "/api/v1/delivery-groups", `{"name":"g","colour":"red"}`, true, 404, hdr(rate...), notFound, ""},
		{"undocumented path", "GET", "/api/v1/nothing", "", false, 404, hdr(), notFound, "no such operation"},
		{"undocumented path, marked bad", "GET", "/api/v1/nothing", "", true, 404, hdr(), notFound, ""},
		{"bad error envelope", "GET", "/api/v1/nothing", "", true, 404, hdr(), `{"error":"nope"}`, "error envelope"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, "http://127.0.0.1:1"+c.path, strings.NewReader(c.reqBody))
		req.Header.Set("Authorization", "Bearer smx_root_x")
		req.Header.Set("Content-Type", "application/json")
		rec := &errRecorder{TB: t}
		checkAPI(rec, req, []byte(c.reqBody), &http.Response{StatusCode: c.status, Header: c.header}, []byte(c.body), c.bad)
		got := strings.Join(rec.errs, "\n")
		switch {
		case c.wantErr == "" && got != "":
			t.Errorf("%s: unexpected report: %s", c.name, got)
		case c.wantErr != "" && !strings.Contains(got, c.wantErr):
			t.Errorf("%s: want a report containing %q, got %q", c.name, c.wantErr, got)
		}
	}
}
