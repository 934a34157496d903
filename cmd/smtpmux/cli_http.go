package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// cliClient is one admin command's connection to the Management API and
// its output streams.
type cliClient struct {
	base, key string
	json      bool
	http      *http.Client
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
}

// cliEnvelope is the Management API's answer envelope (SPEC §3). Data
// stays raw so that --json prints exactly what the server sent.
type cliEnvelope struct {
	OK         *bool           `json:"ok"`
	Data       json.RawMessage `json:"data"`
	Error      *cliAPIError    `json:"error"`
	Pagination *struct {
		HasMore    bool    `json:"has_more"`
		NextCursor *string `json:"next_cursor"`
	} `json:"pagination"`
	Meta struct {
		RequestID string `json:"request_id"`
	} `json:"meta"`
}

// cliAPIError is the "error" member of a failed answer plus its status.
type cliAPIError struct {
	Status    int    `json:"-"`
	RequestID string `json:"-"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	Errors    []struct {
		Field   string `json:"field"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (e *cliAPIError) Error() string { return e.Code + ": " + e.Message }

// apiBase normalises --url: a bare host:port gets http://, and a URL
// that already ends in /api/v1 is accepted as well as the server root.
func (c *cliClient) apiBase() (string, error) {
	b := strings.TrimSpace(c.base)
	if b == "" {
		return "", usageErr("--url is empty")
	}
	if !strings.Contains(b, "://") {
		b = "http://" + b
	}
	u, err := url.Parse(b)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", usageErr("--url %q is not an http(s) URL", c.base)
	}
	b = strings.TrimSuffix(strings.TrimRight(b, "/"), "/api/v1")
	return b + "/api/v1", nil
}

// do sends one request. path is below /api/v1 with IDs already escaped
// (see cliPath); body, when not nil, is sent as JSON. Errors are
// *cliAPIError for an error envelope and *cliExit otherwise.
func (c *cliClient) do(method, path string, query url.Values, body any) (*cliEnvelope, error) {
	if c.key == "" {
		return nil, &cliExit{code: exitAuth, msg: "no API key: set SMTPMUX_API_KEY or pass --key"}
	}
	base, err := c.apiBase()
	if err != nil {
		return nil, err
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return nil, usageErr("bad request URL: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error names the URL, which never carries the key.
		return nil, &cliExit{code: exitNetwork, msg: fmt.Sprintf("cannot reach the server: %v", err)}
	}
	defer resp.Body.Close()
	// Answers are small; the cap keeps a misdirected --url (a download
	// server, say) from filling memory.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &cliExit{code: exitNetwork, msg: fmt.Sprintf("reading the answer: %v", err)}
	}
	var env cliEnvelope
	if err := json.Unmarshal(raw, &env); err != nil || env.OK == nil {
		return nil, &cliExit{code: exitNetwork, msg: fmt.Sprintf("%s %s: not a Management API answer (HTTP %d): %q",
			method, req.URL.Path, resp.StatusCode, cliSnippet(raw))}
	}
	if !*env.OK || env.Error != nil {
		ae := env.Error
		if ae == nil {
			ae = &cliAPIError{Code: "unknown_error", Message: "the server answered ok:false without an error"}
		}
		ae.Status, ae.RequestID = resp.StatusCode, env.Meta.RequestID
		return nil, ae
	}
	return &env, nil
}

// cliSnippet shortens a non-JSON answer for an error message.
func cliSnippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// cliPath joins path segments, escaping each: IDs come from the command
// line and must not be able to walk to another endpoint.
func cliPath(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// Bounds of list fetching: the API's largest page, and the most items a
// list command collects (a guard against an endless cursor loop and an
// unreadable terminal).
const (
	cliPageSize = 100
	cliMaxItems = 10000
)

// list fetches a list endpoint page by page, following next_cursor,
// until it has limit items (0: up to cliMaxItems) or there are no more.
// It returns the raw items in server order.
func (c *cliClient) list(path string, query url.Values, limit int) ([]json.RawMessage, error) {
	if limit <= 0 || limit > cliMaxItems {
		limit = cliMaxItems
	}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	var items []json.RawMessage
	for {
		q.Set("limit", fmt.Sprint(min(cliPageSize, limit-len(items))))
		env, err := c.do("GET", path, q, nil)
		if err != nil {
			return nil, err
		}
		var page []json.RawMessage
		if err := json.Unmarshal(env.Data, &page); err != nil {
			return nil, &cliExit{code: exitNetwork, msg: fmt.Sprintf("GET %s: data is not a list", path)}
		}
		items = append(items, page...)
		p := env.Pagination
		more := p != nil && p.HasMore && p.NextCursor != nil && *p.NextCursor != ""
		if !more {
			return items, nil
		}
		if len(items) >= limit {
			fmt.Fprintf(c.stderr, "note: showing the first %d; more exist (raise --limit, at most %d)\n", len(items), cliMaxItems)
			return items, nil
		}
		if len(page) == 0 || *p.NextCursor == q.Get("cursor") {
			// A cursor that does not advance would loop forever.
			return nil, &cliExit{code: exitNetwork, msg: fmt.Sprintf("GET %s: pagination does not advance", path)}
		}
		q.Set("cursor", *p.NextCursor)
	}
}
