package sendapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/internal/httpapi"
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

// decodeSend validates one message object. Unknown members and wrong JSON
// types answer 400 at once (they are programming errors); value problems
// are collected into one 422; content over 25 MB is a 413.
func decodeSend(o *httpapi.Object) (*Message, error) {
	if err := o.Allow(sendFields...); err != nil {
		return nil, err
	}
	in := &Message{}
	v := &httpapi.Validator{}
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
		v.Add(f, httpapi.FieldOutOfRange, fmt.Sprintf("to, cc and bcc together may list at most %d recipients, not %d", maxRecipients, n))
	}
	rp, err := httpapi.Field[string](o, "return_path")
	if err != nil {
		return nil, err
	}
	if rp.Set && !rp.Null && rp.V != "" {
		in.ReturnPath = httpapi.CheckEmail(v, "return_path", rp.V)
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
	if err := v.Err(); err != nil {
		return nil, err
	}
	total := int64(len(in.HTML) + len(in.Text))
	for _, a := range in.Attachments {
		total += a.Content.Size()
	}
	if total > maxContentBytes {
		return nil, &httpapi.Error{Status: http.StatusRequestEntityTooLarge, Code: httpapi.CodePayloadTooLarge,
			Message: fmt.Sprintf("message content (bodies and decoded attachments) is %d bytes; the limit is %d", total, maxContentBytes)}
	}
	return in, nil
}

// decodeTo reads "to": one address (SPEC §4), as decodeAddr does, or a
// list holding exactly one, which clients written for APIs whose "to" is
// a list send. A list of any other length is refused naming cc/bcc.
func decodeTo(o *httpapi.Object, v *httpapi.Validator) (*Address, error) {
	raw := bytes.TrimSpace(o.Raw("to"))
	if len(raw) == 0 || raw[0] != '[' {
		return decodeAddr(o, "to", v, true)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, httpapi.ErrInvalidParam(o.Path()+"to", "%s", toShapeMsg)
	}
	if len(list) != 1 {
		v.Add(o.Path()+"to", httpapi.FieldOutOfRange, fmt.Sprintf("to takes one address, not a list of %d; put further recipients in cc or bcc", len(list)))
		return nil, nil
	}
	one := o.With("to", list[0])
	return decodeAddr(one, "to", v, true)
}

// toShapeMsg says every form "to" may take.
const toShapeMsg = `to must be one address: "name@example.com", "Name <name@example.com>", {"email":"name@example.com","name":"Name"}, or a list of exactly one of these`

// decodeAddr reads an {email, name} object member, or a plain string
// ("a@example.com" or "Name <a@example.com>"), which many clients send.
func decodeAddr(o *httpapi.Object, name string, v *httpapi.Validator, required bool) (*Address, error) {
	raw := bytes.TrimSpace(o.Raw(name))
	if len(raw) > 0 && raw[0] == '"' {
		return addrString(o.Path()+name, raw, v)
	}
	if len(raw) > 0 && raw[0] != '{' && string(raw) != "null" {
		if name == "to" {
			return nil, httpapi.ErrInvalidParam(o.Path()+name, "%s", toShapeMsg)
		}
		return nil, httpapi.ErrInvalidParam(o.Path()+name, "%s must be an address string or an object {\"email\",\"name\"}", o.Path()+name)
	}
	child, err := o.Child(name)
	if err != nil {
		return nil, err
	}
	if child == nil {
		if required {
			v.Add(o.Path()+name, httpapi.FieldRequired, o.Path()+name+" is required: an object like {\"email\":\"name@example.com\"}")
		}
		return nil, nil
	}
	return addrObject(child, v)
}

func addrObject(child *httpapi.Object, v *httpapi.Validator) (*Address, error) {
	if err := child.Allow("email", "name"); err != nil {
		return nil, err
	}
	email, err := httpapi.Field[string](child, "email")
	if err != nil {
		return nil, err
	}
	nm, err := httpapi.Field[string](child, "name")
	if err != nil {
		return nil, err
	}
	a := &Address{}
	if !email.Set || email.Null || strings.TrimSpace(email.V) == "" {
		v.Add(child.Path()+"email", httpapi.FieldRequired, child.Path()+"email is required")
	} else {
		a.Email = httpapi.CheckEmail(v, child.Path()+"email", email.V)
	}
	if nm.Set && !nm.Null {
		a.Name = httpapi.CheckText(v, child.Path()+"name", strings.TrimSpace(nm.V), maxNameChars)
	}
	return a, nil
}

// addrString reads an address given as a JSON string.
func addrString(path string, raw []byte, v *httpapi.Validator) (*Address, error) {
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return nil, httpapi.ErrInvalidParam(path, "%s must be an address string or an object {\"email\",\"name\"}", path)
	}
	a := &Address{}
	if strings.TrimSpace(str) == "" {
		v.Add(path, httpapi.FieldRequired, path+" is required")
		return a, nil
	}
	if pa, err := mail.ParseAddress(str); err == nil && strings.Contains(str, "<") {
		a.Email = httpapi.CheckEmail(v, path, pa.Address)
		a.Name = httpapi.CheckText(v, path, strings.TrimSpace(pa.Name), maxNameChars)
		return a, nil
	}
	a.Email = httpapi.CheckEmail(v, path, str)
	return a, nil
}

// decodeAddrList reads cc or bcc: an array of address objects.
func decodeAddrList(o *httpapi.Object, name string, v *httpapi.Validator) ([]Address, error) {
	list, err := httpapi.RawList(o, name)
	if err != nil || !list.Set || list.Null {
		return nil, err
	}
	if len(list.V) > maxCopies {
		v.Add(o.Path()+name, httpapi.FieldOutOfRange, fmt.Sprintf("%s may list at most %d recipients", name, maxCopies))
		return nil, nil
	}
	out := make([]Address, 0, len(list.V))
	for i, raw := range list.V {
		if r := bytes.TrimSpace(raw); len(r) > 0 && r[0] == '"' {
			a, err := addrString(o.Path()+name+"["+strconv.Itoa(i)+"]", r, v)
			if err != nil {
				return nil, err
			}
			out = append(out, *a)
			continue
		}
		child, err := httpapi.ParseObject(o.Path()+name+"["+strconv.Itoa(i)+"].", raw)
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

func decodeSubject(o *httpapi.Object, in *Message, v *httpapi.Validator) error {
	subj, err := httpapi.Field[string](o, "subject")
	if err != nil {
		return err
	}
	switch s := subj.V; {
	case !subj.Set || subj.Null || s == "":
		v.Add("subject", httpapi.FieldRequired, "subject is required (1 to 998 characters)")
	case utf8.RuneCountInString(s) > maxSubjectChars:
		v.Add("subject", httpapi.FieldTooLong, "subject must be at most 998 characters")
	case strings.ContainsAny(s, "\r\n"):
		v.Add("subject", httpapi.FieldInvalid, "subject must not contain line breaks")
	case httpapi.HasControl(strings.ReplaceAll(s, "\t", " ")):
		v.Add("subject", httpapi.FieldInvalid, "subject must not contain control characters")
	default:
		in.Subject = s
	}
	return nil
}

func decodeBodies(o *httpapi.Object, in *Message, v *httpapi.Validator) error {
	html, err := httpapi.Field[string](o, "html_body")
	if err != nil {
		return err
	}
	text, err := httpapi.Field[string](o, "text_body")
	if err != nil {
		return err
	}
	in.HTML, in.Text = html.V, text.V
	if in.HTML == "" && in.Text == "" {
		v.Add("html_body", httpapi.FieldRequired, "html_body or text_body is required")
	}
	for _, b := range [][2]string{{"html_body", in.HTML}, {"text_body", in.Text}} {
		if !utf8.ValidString(b[1]) || strings.ContainsRune(b[1], 0) {
			v.Add(b[0], httpapi.FieldInvalid, b[0]+" must be UTF-8 text without NUL characters")
		}
	}
	return nil
}

// decodeHeaders reads custom_headers: X-* names only, so a request can
// never override what the API builds (From, Subject, MIME structure) or
// smuggle routing headers; values without line breaks, so it can never
// inject other headers.
func decodeHeaders(o *httpapi.Object, v *httpapi.Validator) ([][2]string, error) {
	child, err := o.Child("custom_headers")
	if err != nil || child == nil {
		return nil, err
	}
	names := child.Names()
	if len(names) > maxCustomHeaders {
		v.Add("custom_headers", httpapi.FieldOutOfRange, fmt.Sprintf("custom_headers may hold at most %d headers", maxCustomHeaders))
		return nil, nil
	}
	var out [][2]string
	for _, name := range names {
		val, err := httpapi.Field[string](child, name)
		if err != nil {
			return nil, err
		}
		f := "custom_headers." + name
		switch {
		case len(name) < 3 || !strings.EqualFold(name[:2], "X-") || len(name) > maxHeaderName || !headerName(name):
			v.Add(f, httpapi.FieldNotSupported, "only X-* headers may be set (letters, digits and hyphens, at most 76 characters)")
		case val.Null:
			v.Add(f, httpapi.FieldInvalid, f+" must be a string")
		case utf8.RuneCountInString(val.V) > maxHeaderValue:
			v.Add(f, httpapi.FieldTooLong, fmt.Sprintf("%s must be at most %d characters", f, maxHeaderValue))
		case strings.ContainsAny(val.V, "\r\n") || httpapi.HasControl(strings.ReplaceAll(val.V, "\t", " ")):
			v.Add(f, httpapi.FieldInvalid, f+" must not contain line breaks or control characters")
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
