package shape

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-message"
)

// Limits that bound the work RewriteLinks does on hostile input.
const (
	// maxPartSize: larger text/html parts are left alone; a 10 MB HTML body
	// is not a newsletter and tokenizing it per attempt would be wasted work.
	maxPartSize = 10 << 20
	// maxDepth: nesting deeper than any real mail client produces is treated
	// as broken MIME instead of being recursed into.
	maxDepth = 32
)

// Reasons RewriteLinks leaves a message unchanged. Both are informational:
// the caller sends the returned bytes anyway and may log or record the error.
var (
	// ErrDKIMSigned: the message already carries a DKIM-Signature, which
	// covers the body; rewriting would break it (SPEC §6).
	ErrDKIMSigned = errors.New("shape: message already DKIM-signed, links not rewritten")
	// ErrBrokenMIME: the MIME structure could not be parsed.
	ErrBrokenMIME = errors.New("shape: malformed MIME, links not rewritten")
)

// RewriteLinks points every trackable link of the text/html parts of msg at
// https://<trackingDomain>/t/<token(url)> and reports how many it rewrote.
//
// Trackable means an absolute http or https href on an <a> or <area>
// element without a data-smtpmux-notrack attribute. mailto:, tel:,
// fragment and relative links, <link>/<base> hrefs, text/plain parts,
// attachments and embedded message/rfc822 parts are left alone. Each part
// keeps its transfer encoding (7bit, 8bit, binary, quoted-printable and
// base64 are decoded, edited and re-encoded in the same style) and its
// charset: only the attribute value bytes change, so nothing needs
// converting to UTF-8 except the URL handed to token. Parts over 10 MB and
// parts in charsets that are not ASCII-compatible (UTF-16/32, UTF-7, HZ)
// are skipped.
//
// token is called once per link, in document order, with the URL as the
// recipient's client would follow it (entities decoded, surrounding space
// trimmed). A closure can number the calls to get the link index. It must
// return a non-empty URL-safe string (A-Z a-z 0-9 - . _ ~). Rarely a link
// token was asked for is left unrewritten (a 7bit line would exceed 998
// octets, or a re-encoded part would collide with a MIME boundary), so
// indexes may have gaps; n counts only what was rewritten.
//
// When nothing is rewritten out is msg itself. On error (ErrDKIMSigned,
// ErrBrokenMIME, bad arguments) out is msg unchanged and n is 0.
func RewriteLinks(msg []byte, trackingDomain string, token func(url string) string) (out []byte, n int, err error) {
	if !validTrackingDomain(trackingDomain) {
		return msg, 0, fmt.Errorf("shape: invalid tracking domain %q", trackingDomain)
	}
	h, _, err := parseHeader(msg)
	if err != nil {
		return msg, 0, fmt.Errorf("%w: %v", ErrBrokenMIME, err)
	}
	if h.Has("Dkim-Signature") {
		return msg, 0, ErrDKIMSigned
	}
	var leaves []leaf
	if err := walk(msg, 0, len(msg), 0, nil, &leaves); err != nil {
		return msg, 0, fmt.Errorf("%w: %v", ErrBrokenMIME, err)
	}
	prefix := "https://" + trackingDomain + "/t/"
	var tokenErr error
	mint := func(url string) []byte {
		t := token(url)
		if !validToken(t) && tokenErr == nil {
			tokenErr = fmt.Errorf("shape: token function returned an unusable token %q", t)
		}
		return []byte(prefix + t)
	}
	var ss []splice
	for _, l := range leaves {
		repl, k := rewritePart(msg[l.body:l.end], l, mint)
		if tokenErr != nil {
			return msg, 0, tokenErr
		}
		if k > 0 {
			ss = append(ss, splice{start: l.body, end: l.end, repl: repl})
			n += k
		}
	}
	return applySplices(msg, ss), n, nil
}

// leaf is a text/html part eligible for rewriting, located in msg.
type leaf struct {
	body, end  int               // encoded body bytes
	encoding   string            // Content-Transfer-Encoding, lower case
	params     map[string]string // Content-Type parameters (charset)
	boundaries []string          // enclosing multipart boundaries
}

// walk finds the text/html leaves of the entity msg[start:end]. We split
// multiparts ourselves rather than with go-message's multipart reader
// because we need byte offsets to splice into; go-message still parses every
// header, and the fuzz test checks that both agree on the structure.
func walk(msg []byte, start, end, depth int, bounds []string, out *[]leaf) error {
	if depth > maxDepth {
		return errors.New("multipart nesting too deep")
	}
	ent := msg[start:end]
	h, rh, err := parseHeader(ent)
	if err != nil {
		return err
	}
	mh := message.Header{Header: h.Header.Header}
	mt, params, err := mh.ContentType()
	if err != nil {
		if strings.HasPrefix(strings.ToLower(mt), "multipart/") {
			return fmt.Errorf("unreadable multipart Content-Type: %v", err)
		}
		return nil // an unreadable Content-Type is not something we rewrite
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		b := params["boundary"]
		if b == "" {
			return errors.New("multipart without boundary")
		}
		parts, err := splitMultipart(ent[rh.body:], b)
		if err != nil {
			return err
		}
		sub := append(bounds[:len(bounds):len(bounds)], b)
		for _, p := range parts {
			if err := walk(msg, start+rh.body+p[0], start+rh.body+p[1], depth+1, sub, out); err != nil {
				return err
			}
		}
	case mt == "text/html":
		// Read the raw value: a malformed parameter must not turn an
		// attachment back into a body part.
		disp := strings.ToLower(strings.TrimSpace(h.Get("Content-Disposition")))
		if strings.HasPrefix(disp, "attachment") {
			return nil // a file the recipient saves, not the message they read
		}
		*out = append(*out, leaf{
			body: start + rh.body, end: end,
			encoding:   strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))),
			params:     params,
			boundaries: bounds,
		})
	}
	return nil
}

// splitMultipart returns the [start,end) offsets of each body part in body,
// following RFC 2046 §5.1.1 exactly as go-message's multipart reader does,
// so both see the same parts: a delimiter is a line "--boundary" plus
// optional SP/HT and the line break, the line break before it belongs to the
// delimiter, "--boundary--" closes. The first delimiter decides whether the
// entity uses CRLF or bare LF, and later delimiters must match it. A missing
// close delimiter is an error, as it is for go-message.
func splitMultipart(body []byte, boundary string) ([][2]int, error) {
	dash := []byte("--" + boundary)
	nl := ""
	var parts [][2]int
	partStart := -1
	for pos := 0; pos < len(body); {
		next := len(body)
		if i := bytes.IndexByte(body[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		line := body[pos:next]
		// In CRLF mode a delimiter must follow a CRLF, not a bare LF.
		afterNL := pos == 0 || partStart < 0 || nl != "\r\n" || (pos >= 2 && body[pos-2] == '\r')
		if bytes.HasPrefix(line, dash) && afterNL {
			rest := line[len(dash):]
			closing := bytes.HasPrefix(rest, []byte("--"))
			if closing {
				rest = rest[2:]
			}
			rest = bytes.TrimLeft(rest, " \t")
			if nl == "" && !closing && (string(rest) == "\n" || string(rest) == "\r\n") {
				nl = string(rest)
			}
			mode := nl
			if mode == "" {
				mode = "\r\n"
			}
			if string(rest) == mode || closing && len(rest) == 0 {
				if partStart >= 0 {
					end := pos
					if end > partStart {
						end -= len(mode) // the line break before the delimiter
					}
					parts = append(parts, [2]int{partStart, max(partStart, end)})
				}
				if closing {
					return parts, nil
				}
				partStart = next
			}
		}
		pos = next
	}
	return nil, fmt.Errorf("multipart boundary %q not closed", boundary)
}

// validTrackingDomain accepts a host name with an optional port. The value
// is pasted into HTML attributes, possibly unquoted ones, so it must not
// contain anything but host characters.
func validTrackingDomain(d string) bool {
	if d == "" || len(d) > 253+6 || strings.HasPrefix(d, ".") || strings.HasPrefix(d, "-") {
		return false
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == ':') {
			return false
		}
	}
	return true
}

// validToken keeps tokens within RFC 3986 unreserved characters so the
// rewritten URL needs no escaping in a URL path or an HTML attribute, even
// an unquoted one.
func validToken(t string) bool {
	if t == "" || len(t) > 512 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~') {
			return false
		}
	}
	return true
}
