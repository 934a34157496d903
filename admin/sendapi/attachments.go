package sendapi

import (
	"bytes"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/internal/httpapi"
)

// Attachment limits (SPEC §4).
const (
	maxAttachments   = 10
	maxFilenameChars = 255
	maxMediaType     = 255
)

// fcBlocked marks an attachment refused as an executable or archive.
const fcBlocked = "blocked_attachment"

// decodeAttachments reads attachments: at most ten {filename, content
// (base64), encoding ("base64"), type} objects. attachment_id (the hosted
// product's uploaded-file reference) is recognised but not supported: this
// daemon has no upload endpoint.
func decodeAttachments(o *httpapi.Object, v *httpapi.Validator) ([]Attachment, error) {
	list, err := httpapi.RawList(o, "attachments")
	if err != nil || !list.Set || list.Null {
		return nil, err
	}
	if len(list.V) > maxAttachments {
		v.Add("attachments", httpapi.FieldOutOfRange, fmt.Sprintf("at most %d attachments are allowed, not %d", maxAttachments, len(list.V)))
		return nil, nil
	}
	var out []Attachment
	for i, raw := range list.V {
		p := "attachments[" + strconv.Itoa(i) + "]."
		a, err := httpapi.ParseObject(p, raw)
		if err != nil {
			return nil, err
		}
		if err := a.Allow("filename", "content", "encoding", "type", "attachment_id"); err != nil {
			return nil, err
		}
		if a.Has("attachment_id") {
			v.Add(p+"attachment_id", httpapi.FieldNotSupported, "uploaded attachments are not supported; send the content inline, base64-encoded")
			continue
		}
		att, err := decodeAttachment(a, p, v)
		if err != nil {
			return nil, err
		}
		if att != nil {
			out = append(out, *att)
		}
	}
	return out, nil
}

func decodeAttachment(a *httpapi.Object, p string, v *httpapi.Validator) (*Attachment, error) {
	name, err := httpapi.Field[string](a, "filename")
	if err != nil {
		return nil, err
	}
	content, err := contentField(a, "content")
	if err != nil {
		return nil, err
	}
	enc, err := httpapi.Field[string](a, "encoding")
	if err != nil {
		return nil, err
	}
	typ, err := httpapi.Field[string](a, "type")
	if err != nil {
		return nil, err
	}
	before := v.Len()
	att := &Attachment{}
	fn := strings.TrimSpace(name.V)
	switch {
	case fn == "":
		v.Add(p+"filename", httpapi.FieldRequired, p+"filename is required")
	case utf8.RuneCountInString(fn) > maxFilenameChars:
		v.Add(p+"filename", httpapi.FieldTooLong, fmt.Sprintf("%sfilename must be at most %d characters", p, maxFilenameChars))
	case httpapi.HasControl(fn) || strings.ContainsAny(fn, `/\`):
		v.Add(p+"filename", httpapi.FieldInvalid, p+"filename must be a plain file name without path separators or control characters")
	case httpapi.HasFormatChar(fn):
		v.Add(p+"filename", httpapi.FieldInvalid, p+"filename must not contain invisible format characters such as U+202E")
	default:
		if kind := BlockedExtension(fn); kind != "" {
			v.Add(p+"filename", fcBlocked, "attachments of type "+kind+" are not accepted")
		}
		att.Filename = fn
	}
	if enc.Set && !enc.Null && enc.V != "base64" {
		v.Add(p+"encoding", httpapi.FieldNotSupported, `encoding must be "base64"`)
	}
	if typ.Set && !typ.Null && typ.V != "" {
		att.ContentType = checkMediaType(v, p+"type", typ.V)
	}
	if !content.Set || content.Null || len(content.V) == 0 {
		v.Add(p+"content", httpapi.FieldRequired, p+"content is required: the file, base64-encoded")
	} else if c, ok := ParseBase64(content.V); !ok {
		v.Add(p+"content", httpapi.FieldInvalid, p+"content must be non-empty standard base64")
	} else if kind := SniffBlockedAt(c, c.Size()); kind != "" {
		v.Add(p+"content", fcBlocked, "executables and archives are not accepted as attachments (content is "+kind+")")
	} else {
		att.Content = c
	}
	if v.Len() > before {
		return nil, nil
	}
	if att.ContentType == "" {
		att.ContentType = GuessType(att.Filename)
	}
	return att, nil
}

// contentField reads a string member as httpapi.Field[string] does (same answer
// for a wrong type), but as the bytes of the request rather than a copy:
// the content of a large attachment is most of the request.
func contentField(o *httpapi.Object, name string) (httpapi.Opt[[]byte], error) {
	var out httpapi.Opt[[]byte]
	raw := o.Raw(name)
	if raw == nil {
		return out, nil
	}
	out.Set = true
	raw = bytes.TrimSpace(raw)
	switch {
	case o.IsNull(name):
		out.Null = true
	case len(raw) < 2 || raw[0] != '"':
		return out, httpapi.ErrInvalidParam(o.Path()+name, "%s must be %s", o.Path()+name, httpapi.TypeName(""))
	default:
		out.V = ContentText(raw)
	}
	return out, nil
}

// checkMediaType validates a MIME type override. Multipart and message
// types are refused: the part is sent base64-encoded, which RFC 2046
// forbids for them.
func checkMediaType(v *httpapi.Validator, f, s string) string {
	t, _, err := mime.ParseMediaType(s)
	switch {
	case len(s) > maxMediaType || err != nil || !strings.Contains(t, "/") || strings.ContainsAny(s, "\r\n"):
		v.Add(f, httpapi.FieldInvalid, f+` must be a MIME type like "application/pdf"`)
	case strings.HasPrefix(t, "multipart/") || strings.HasPrefix(t, "message/"):
		v.Add(f, httpapi.FieldNotSupported, f+" must not be a multipart or message type")
	default:
		// Parameters are dropped: the part gets its own (name), and a
		// charset cannot be vouched for in base64 content.
		return t
	}
	return ""
}
