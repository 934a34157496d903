// Package httpapi is the request and response plumbing the Management API
// (admin) and the Sending API (admin/sendapi) share, so that both answer
// alike: the SPEC §3 envelope and its error codes (Error, WriteOK,
// WriteError, Fail), strict JSON decoding within the body limits (Object,
// Field, ReadRaw), field validation that lists every problem in one 422
// (Validator, CheckEmail…), the request's ID and start carried in its
// context (Info), bearer credentials and the per-address limit on failed
// authentications (Bearer, Attempt), body read deadlines (Deadlines), and
// the Idempotency-Key layer every POST goes through (Idempotency).
//
// It knows no route and no product rule: those stay with the packages
// that serve them.
package httpapi
