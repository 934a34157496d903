package sendapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/internal/httpapi"
)

// maxBatchMessages bounds POST /emails/send/batch (SPEC §4).
const maxBatchMessages = 100

// batchItem is one message's result, in input order.
type batchItem struct {
	Index     int            `json:"index"`
	MessageID *string        `json:"message_id"`
	Status    string         `json:"status"` // queued | failed
	Error     *httpapi.Error `json:"error,omitempty"`
}

type batchSummary struct {
	Total  int `json:"total"`
	Queued int `json:"queued"`
	Failed int `json:"failed"`
}

type batchResult struct {
	Results []batchItem  `json:"results"`
	Summary batchSummary `json:"summary"`
}

// sendBatch is POST /emails/send/batch: {"messages":[…]}. Every message is
// validated and submitted on its own (partial success); the answer lists
// each one's result. When nothing was queued the answer is an error, so a
// client that only checks the status does not mistake it for success: 422
// when every message was invalid (retrying cannot help), else 503 (some
// failed for reasons that may pass, and nothing was queued, so retrying
// the whole batch cannot duplicate anything). A 503 is not stored under an
// Idempotency-Key, so such a retry runs again.
func (s *Handler) sendBatch(c *call) error {
	o, err := httpapi.ReadObject(c.r, maxSendBodyBytes)
	if err != nil {
		return err
	}
	if err := o.Allow("messages"); err != nil {
		return err
	}
	msgs, err := httpapi.RawList(o, "messages")
	if err != nil {
		return err
	}
	switch {
	case !msgs.Set || msgs.Null:
		return httpapi.ErrValidation("messages", httpapi.FieldRequired, "messages is required: an array of 1 to 100 messages")
	case len(msgs.V) == 0 || len(msgs.V) > maxBatchMessages:
		return httpapi.ErrValidation("messages", httpapi.FieldOutOfRange, fmt.Sprintf("messages must hold 1 to %d messages, not %d", maxBatchMessages, len(msgs.V)))
	}
	res := batchResult{Results: make([]batchItem, 0, len(msgs.V)), Summary: batchSummary{Total: len(msgs.V)}}
	transient := 0
	for i, raw := range msgs.V {
		it := batchItem{Index: i, Status: "queued"}
		id, err := s.batchOne(c, raw)
		if err == nil {
			it.MessageID = &id
			res.Summary.Queued++
		} else {
			ae := s.itemError(c, i, err)
			it.Status, it.Error = "failed", ae
			res.Summary.Failed++
			if ae.Retryable {
				transient++
			}
		}
		res.Results = append(res.Results, it)
	}
	if res.Summary.Queued > 0 {
		for i := range res.Results {
			res.Results[i].Error = trimItemError(res.Results[i].Error)
		}
		c.ok(http.StatusOK, res)
		return nil
	}
	return batchFailure(res, transient)
}

func (s *Handler) batchOne(c *call, raw json.RawMessage) (string, error) {
	o, err := httpapi.ParseObject("", raw)
	if err != nil {
		return "", err
	}
	in, err := decodeSend(o)
	if err != nil {
		return "", err
	}
	return s.submitOne(c, in)
}

// maxItemFieldErrors bounds the field problems a failed item of a
// partly queued batch lists. That answer is the one large answer the
// Idempotency-Key layer keeps (in etcd, in cluster mode, for 24 h): with
// it an item is at most ~3.5 KB of ASCII (its error's message 1,000
// bytes and param 200, each field problem's name 200 and message ~300,
// docs/cluster.md), 99 failed items ~350 KB, well within the 1 MiB a
// kept record may take. A message's 50 custom headers could otherwise
// list 60 problems each, megabytes per batch.
const maxItemFieldErrors = 3

// trimItemError returns e with at most maxItemFieldErrors field
// problems, its message saying how many there were (e is not changed:
// it may be shared).
func trimItemError(e *httpapi.Error) *httpapi.Error {
	if e == nil || len(e.Errors) <= maxItemFieldErrors {
		return e
	}
	t := *e
	t.Errors = e.Errors[:maxItemFieldErrors]
	t.Message = fmt.Sprintf("%s (%d problems; the first %d are listed: send the message alone for all of them)", clipMessage(e.Message), len(e.Errors), maxItemFieldErrors)
	return &t
}

// clipMessage keeps a message short enough that the note after it fits
// the envelope's 1,000-byte bound.
func clipMessage(m string) string {
	const room = 880
	if len(m) <= room {
		return m
	}
	for i := room; i > 0; i-- {
		if utf8.RuneStart(m[i]) {
			return m[:i] + "…"
		}
	}
	return ""
}

// itemError renders one message's failure. Internal errors are logged with
// the request and index and reported generically, as fail does.
func (s *Handler) itemError(c *call, i int, err error) *httpapi.Error {
	var ae *httpapi.Error
	if errors.As(err, &ae) {
		return ae
	}
	s.log.Error("batch message failed", "request_id", c.reqID, "index", i, "err", err)
	if ae := httpapi.StorageFull(err); ae != nil {
		return ae
	}
	return httpapi.ErrInternal(c.reqID)
}

// batchFailure is the answer when no message was queued. Its errors[] name
// each message's problems with their path in the request.
func batchFailure(res batchResult, transient int) error {
	var fields []httpapi.FieldError
	for _, it := range res.Results {
		prefix := fmt.Sprintf("messages[%d]", it.Index)
		e := it.Error
		if len(e.Errors) == 0 {
			f := prefix
			if e.Param != "" {
				f += "." + e.Param
			}
			fields = append(fields, httpapi.FieldError{Field: f, Code: e.Code, Message: e.Message})
			continue
		}
		for _, fe := range e.Errors {
			fields = append(fields, httpapi.FieldError{Field: prefix + "." + fe.Field, Code: fe.Code, Message: fe.Message})
		}
	}
	if transient == 0 {
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: httpapi.CodeValidation, Param: fields[0].Field,
			Message: fmt.Sprintf("all %d messages are invalid; nothing was queued", len(res.Results)), Errors: fields}
	}
	// One shared cause (say, no active provider) is reported as itself.
	code, same := "", true
	for _, it := range res.Results {
		if it.Error.Retryable {
			if code != "" && code != it.Error.Code {
				same = false
			}
			code = it.Error.Code
		}
	}
	if !same || code != codeNoActiveProviders {
		code = httpapi.CodeServiceUnavailable
	}
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: code, Retryable: true, Errors: fields,
		Message: "no message of the batch could be queued; retry later", RetryAfter: time.Minute}
}
