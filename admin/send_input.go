package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/admin/sendapi"
)

// Sending API limits (SPEC §4, and the hosted product's request schema).
const (
	// maxSendBodyBytes is the request limit of the send endpoints: 25 MB
	// of content is about 33.4 MB once attachments are base64-encoded,
	// plus JSON around it. The 25 MB rule itself is maxContentBytes.
	maxSendBodyBytes = 35 << 20
	maxContentBytes  = 25 << 20 // html + text + decoded attachments
	maxSubjectChars  = 998
	maxNameChars     = 100
	maxCopies        = 49 // cc and bcc, each
	maxRecipients    = 50 // to + cc + bcc
	maxHeaderValue   = 500
	maxCustomHeaders = 50
	maxHeaderName    = 76
)

// sendFields are the members a message object may have; anything else is
// a 400 (the schema's additionalProperties: false).
var sendFields = []string{"from", "to", "subject", "html_body", "text_body", "cc", "bcc",
	"reply_to", "return_path", "custom_headers", "attachments"}

// readBodyLimit is readBody's reading part with a caller-chosen limit (the
// Sending API accepts far larger bodies than the Management API's 1 MiB).
func readBodyLimit(r *http.Request, limit int64) ([]byte, error) {
	data, err := readRaw(r, limit)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errInvalidParam("", "request body must be a JSON object")
	}
	return data, nil
}

// decodeSend validates one message object. Unknown members and wrong JSON
// types answer 400 at once (they are programming errors); value problems
// are collected into one 422; content over 25 MB is a 413.
func decodeSend(o *object) (*sendapi.Message, error) {
	if err := o.allow(sendFields...); err != nil {
		return nil, err
	}
	in := &sendapi.Message{}
	v := &validator{}
	from, err := decodeAddr(o, "from", v, true)
	if err != nil {
		return nil, err
	}
	to, err := decodeTo(o, v)
	if err != nil {
		return nil, err
	}
	replyTo, err := decodeAddr(o, "reply_to", v, false)
	if err != nil {
		return nil, err
	}
	if from != nil {
		in.From = *from
	}
	if to != nil {
		in.To = *to
	}
	in.ReplyTo = replyTo
	if in.Cc, err = decodeAddrList(o, "cc", v); err != nil {
		return nil, err
	}
	if in.Bcc, err = decodeAddrList(o, "bcc", v); err != nil {
		return nil, err
	}
	if n := 1 + len(in.Cc) + len(in.Bcc); n > maxRecipients {
		f := "cc"
		if len(in.Bcc) > 0 {
			f = "bcc"
		}
		v.add(f, fcOutOfRange, fmt.Sprintf("to, cc and bcc together may list at most %d recipients, not %d", maxRecipients, n))
	}
	rp, err := field[string](o, "return_path")
	if err != nil {
		return nil, err
	}
	if rp.Set && !rp.Null && rp.V != "" {
		in.ReturnPath = checkEmail(v, "return_path", rp.V)
	}
	if err := decodeSubject(o, in, v); err != nil {
		return nil, err
	}
	if err := decodeBodies(o, in, v); err != nil {
		return nil, err
	}
	if in.Headers, err = decodeHeaders(o, v); err != nil {
		return nil, err
	}
	if in.Attachments, err = decodeAttachments(o, v); err != nil {
		return nil, err
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	total := int64(len(in.HTML) + len(in.Text))
	for _, a := range in.Attachments {
		total += a.Content.Size()
	}
	if total > maxContentBytes {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: codePayloadTooLarge,
			Message: fmt.Sprintf("message content (bodies and decoded attachments) is %d bytes; the limit is %d", total, maxContentBytes)}
	}
	return in, nil
}

// decodeTo reads "to": one address (SPEC §4), as decodeAddr does, or a
// list holding exactly one, which clients written for APIs whose "to" is
// a list send. A list of any other length is refused naming cc/bcc.
func decodeTo(o *object, v *validator) (*sendapi.Address, error) {
	raw := bytes.TrimSpace(o.members["to"])
	if len(raw) == 0 || raw[0] != '[' {
		return decodeAddr(o, "to", v, true)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errInvalidParam(o.path+"to", "%s", toShapeMsg)
	}
	if len(list) != 1 {
		v.add(o.path+"to", fcOutOfRange, fmt.Sprintf("to takes one address, not a list of %d; put further recipients in cc or bcc", len(list)))
		return nil, nil
	}
	one := &object{path: o.path, members: map[string]json.RawMessage{"to": list[0]}}
	return decodeAddr(one, "to", v, true)
}

// toShapeMsg says every form "to" may take.
const toShapeMsg = `to must be one address: "name@example.com", "Name <name@example.com>", {"email":"name@example.com","name":"Name"}, or a list of exactly one of these`

// decodeAddr reads an {email, name} object member, or a plain string
// ("a@example.com" or "Name <a@example.com>"), which many clients send.
func decodeAddr(o *object, name string, v *validator, required bool) (*sendapi.Address, error) {
	raw := bytes.TrimSpace(o.members[name])
	if len(raw) > 0 && raw[0] == '"' {
		return addrString(o.path+name, raw, v)
	}
	if len(raw) > 0 && raw[0] != '{' && string(raw) != "null" {
		if name == "to" {
			return nil, errInvalidParam(o.path+name, "%s", toShapeMsg)
		}
		return nil, errInvalidParam(o.path+name, "%s must be an address string or an object {\"email\",\"name\"}", o.path+name)
	}
	child, err := o.child(name)
	if err != nil {
		return nil, err
	}
	if child == nil {
		if required {
			v.add(o.path+name, fcRequired, o.path+name+" is required: an object like {\"email\":\"name@example.com\"}")
		}
		return nil, nil
	}
	return addrObject(child, v)
}

func addrObject(child *object, v *validator) (*sendapi.Address, error) {
	if err := child.allow("email", "name"); err != nil {
		return nil, err
	}
	email, err := field[string](child, "email")
	if err != nil {
		return nil, err
	}
	nm, err := field[string](child, "name")
	if err != nil {
		return nil, err
	}
	a := &sendapi.Address{}
	if !email.Set || email.Null || strings.TrimSpace(email.V) == "" {
		v.add(child.path+"email", fcRequired, child.path+"email is required")
	} else {
		a.Email = checkEmail(v, child.path+"email", email.V)
	}
	if nm.Set && !nm.Null {
		a.Name = checkText(v, child.path+"name", strings.TrimSpace(nm.V), maxNameChars)
	}
	return a, nil
}

// addrString reads an address given as a JSON string.
func addrString(path string, raw []byte, v *validator) (*sendapi.Address, error) {
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return nil, errInvalidParam(path, "%s must be an address string or an object {\"email\",\"name\"}", path)
	}
	a := &sendapi.Address{}
	if strings.TrimSpace(str) == "" {
		v.add(path, fcRequired, path+" is required")
		return a, nil
	}
	if pa, err := mail.ParseAddress(str); err == nil && strings.Contains(str, "<") {
		a.Email = checkEmail(v, path, pa.Address)
		a.Name = checkText(v, path, strings.TrimSpace(pa.Name), maxNameChars)
		return a, nil
	}
	a.Email = checkEmail(v, path, str)
	return a, nil
}

// decodeAddrList reads cc or bcc: an array of address objects.
func decodeAddrList(o *object, name string, v *validator) ([]sendapi.Address, error) {
	list, err := rawList(o, name)
	if err != nil || !list.Set || list.Null {
		return nil, err
	}
	if len(list.V) > maxCopies {
		v.add(o.path+name, fcOutOfRange, fmt.Sprintf("%s may list at most %d recipients", name, maxCopies))
		return nil, nil
	}
	out := make([]sendapi.Address, 0, len(list.V))
	for i, raw := range list.V {
		if r := bytes.TrimSpace(raw); len(r) > 0 && r[0] == '"' {
			a, err := addrString(o.path+name+"["+strconv.Itoa(i)+"]", r, v)
			if err != nil {
				return nil, err
			}
			out = append(out, *a)
			continue
		}
		child, err := parseObject(o.path+name+"["+strconv.Itoa(i)+"].", raw)
		if err != nil {
			return nil, err
		}
		a, err := addrObject(child, v)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, nil
}

func decodeSubject(o *object, in *sendapi.Message, v *validator) error {
	subj, err := field[string](o, "subject")
	if err != nil {
		return err
	}
	switch s := subj.V; {
	case !subj.Set || subj.Null || s == "":
		v.add("subject", fcRequired, "subject is required (1 to 998 characters)")
	case utf8.RuneCountInString(s) > maxSubjectChars:
		v.add("subject", fcTooLong, "subject must be at most 998 characters")
	case strings.ContainsAny(s, "\r\n"):
		v.add("subject", fcInvalid, "subject must not contain line breaks")
	case hasControl(strings.ReplaceAll(s, "\t", " ")):
		v.add("subject", fcInvalid, "subject must not contain control characters")
	default:
		in.Subject = s
	}
	return nil
}

func decodeBodies(o *object, in *sendapi.Message, v *validator) error {
	html, err := field[string](o, "html_body")
	if err != nil {
		return err
	}
	text, err := field[string](o, "text_body")
	if err != nil {
		return err
	}
	in.HTML, in.Text = html.V, text.V
	if in.HTML == "" && in.Text == "" {
		v.add("html_body", fcRequired, "html_body or text_body is required")
	}
	for _, b := range [][2]string{{"html_body", in.HTML}, {"text_body", in.Text}} {
		if !utf8.ValidString(b[1]) || strings.ContainsRune(b[1], 0) {
			v.add(b[0], fcInvalid, b[0]+" must be UTF-8 text without NUL characters")
		}
	}
	return nil
}

// decodeHeaders reads custom_headers: X-* names only, so a request can
// never override what the API builds (From, Subject, MIME structure) or
// smuggle routing headers; values without line breaks, so it can never
// inject other headers.
func decodeHeaders(o *object, v *validator) ([][2]string, error) {
	child, err := o.child("custom_headers")
	if err != nil || child == nil {
		return nil, err
	}
	if len(child.members) > maxCustomHeaders {
		v.add("custom_headers", fcOutOfRange, fmt.Sprintf("custom_headers may hold at most %d headers", maxCustomHeaders))
		return nil, nil
	}
	names := make([]string, 0, len(child.members))
	for k := range child.members {
		names = append(names, k)
	}
	sort.Strings(names)
	var out [][2]string
	for _, name := range names {
		val, err := field[string](child, name)
		if err != nil {
			return nil, err
		}
		f := "custom_headers." + name
		switch {
		case len(name) < 3 || !strings.EqualFold(name[:2], "X-") || len(name) > maxHeaderName || !headerName(name):
			v.add(f, fcNotSupported, "only X-* headers may be set (letters, digits and hyphens, at most 76 characters)")
		case val.Null:
			v.add(f, fcInvalid, f+" must be a string")
		case utf8.RuneCountInString(val.V) > maxHeaderValue:
			v.add(f, fcTooLong, fmt.Sprintf("%s must be at most %d characters", f, maxHeaderValue))
		case strings.ContainsAny(val.V, "\r\n") || hasControl(strings.ReplaceAll(val.V, "\t", " ")):
			v.add(f, fcInvalid, f+" must not contain line breaks or control characters")
		default:
			out = append(out, [2]string{name, val.V})
		}
	}
	return out, nil
}

// headerName accepts the field-name characters safe everywhere: letters,
// digits and hyphens (RFC 5322 allows more, which some MTAs mishandle).
func headerName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
