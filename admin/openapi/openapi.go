// Package openapi holds the OpenAPI 3.1 document of smtpmux's HTTP API
// (Management API, Sending API, health probes), written and maintained by
// hand in openapi.json next to this file.
//
// The document is the contract, so it is kept honest by tests rather than
// by generation: admin's route test fails when a registered route is
// missing from it (or it names one that is not registered), and the
// end-to-end suite in cmd/smtpmux validates every request it sends and
// every answer it gets against it. Change the document in the same commit
// as the handler.
package openapi

import _ "embed"

// JSON is the document as served at GET /api/v1/openapi.json. Callers must
// not modify it.
//
//go:embed openapi.json
var JSON []byte
