package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// refusingBody is a request body whose buffer reservation (BufferGrower)
// allows at most budget bytes.
type refusingBody struct {
	io.Reader
	budget, taken int64
}

func (b *refusingBody) Close() error { return nil }

func (b *refusingBody) Grow(n int64) error {
	if b.taken+n > b.budget {
		return ErrUnavailable("budget")
	}
	b.taken += n
	return nil
}

func TestReadRaw(t *testing.T) {
	req := func(body string, length int64) *http.Request {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.ContentLength = length
		return r
	}
	var ae *Error
	// Over the limit, announced or not: 413, and an announced one unread.
	if _, err := ReadRaw(req("12345", 5), 4); !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("announced over the limit: %v", err)
	}
	if _, err := ReadRaw(req("12345", -1), 4); !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked over the limit: %v", err)
	}
	if got, err := ReadRaw(req("1234", -1), 4); err != nil || string(got) != "1234" {
		t.Errorf("exactly the limit: %q %v", got, err)
	}
	// A body that reserves its buffer: what it refuses ends the read with
	// its own answer; what it allows is reserved as the buffer grows,
	// never the length announced up front.
	big := strings.Repeat("x", 200<<10)
	r := req(big, int64(len(big)))
	rb := &refusingBody{Reader: strings.NewReader(big), budget: 100 << 10}
	r.Body = rb
	if _, err := ReadRaw(r, 1<<20); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("refused reservation: %v", err)
	}
	r = req(big, int64(len(big)))
	rb = &refusingBody{Reader: strings.NewReader(big), budget: 1 << 20}
	r.Body = rb
	if got, err := ReadRaw(r, 1<<20); err != nil || len(got) != len(big) || rb.taken < int64(len(big)) || rb.taken > 4*int64(len(big)) {
		t.Errorf("reserved read: %d bytes, %d reserved, %v", len(got), rb.taken, err)
	}
	// A body the idempotency layer read already is handed over, once.
	data := []byte(`{"a":1}`)
	r = req("", int64(len(data)))
	r.Body = &prereadBody{Reader: bytes.NewReader(data), data: data}
	if got, err := ReadRaw(r, 10); err != nil || &got[0] != &data[0] {
		t.Errorf("preread body copied or lost: %q %v", got, err)
	}
}

func TestReadObject(t *testing.T) {
	for _, c := range []struct {
		body   string
		status int
	}{{"", 400}, {"  ", 400}, {"null", 400}, {"[]", 400}, {"{", 400}, {`{"a":1}`, 0}} {
		o, err := ReadObject(httptest.NewRequest("POST", "/", strings.NewReader(c.body)), 100)
		var ae *Error
		switch {
		case c.status == 0 && (err != nil || !o.Has("a")):
			t.Errorf("%q: %v", c.body, err)
		case c.status != 0 && (!errors.As(err, &ae) || ae.Status != c.status):
			t.Errorf("%q: %v, want %d", c.body, err, c.status)
		}
	}
}
