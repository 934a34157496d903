package admin

import (
	"bytes"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/admin/sendapi"
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
func decodeAttachments(o *object, v *validator) ([]sendapi.Attachment, error) {
	list, err := rawList(o, "attachments")
	if err != nil || !list.Set || list.Null {
		return nil, err
	}
	if len(list.V) > maxAttachments {
		v.add("attachments", fcOutOfRange, fmt.Sprintf("at most %d attachments are allowed, not %d", maxAttachments, len(list.V)))
		return nil, nil
	}
	var out []sendapi.Attachment
	for i, raw := range list.V {
		p := "attachments[" + strconv.Itoa(i) + "]."
		a, err := parseObject(p, raw)
		if err != nil {
			return nil, err
		}
		if err := a.allow("filename", "content", "encoding", "type", "attachment_id"); err != nil {
			return nil, err
		}
		if a.has("attachment_id") {
			v.add(p+"attachment_id", fcNotSupported, "uploaded attachments are not supported; send the content inline, base64-encoded")
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

func decodeAttachment(a *object, p string, v *validator) (*sendapi.Attachment, error) {
	name, err := field[string](a, "filename")
	if err != nil {
		return nil, err
	}
	content, err := contentField(a, "content")
	if err != nil {
		return nil, err
	}
	enc, err := field[string](a, "encoding")
	if err != nil {
		return nil, err
	}
	typ, err := field[string](a, "type")
	if err != nil {
		return nil, err
	}
	before := len(v.errs)
	att := &sendapi.Attachment{}
	fn := strings.TrimSpace(name.V)
	switch {
	case fn == "":
		v.add(p+"filename", fcRequired, p+"filename is required")
	case utf8.RuneCountInString(fn) > maxFilenameChars:
		v.add(p+"filename", fcTooLong, fmt.Sprintf("%sfilename must be at most %d characters", p, maxFilenameChars))
	case hasControl(fn) || strings.ContainsAny(fn, `/\`):
		v.add(p+"filename", fcInvalid, p+"filename must be a plain file name without path separators or control characters")
	case hasFormatChar(fn):
		v.add(p+"filename", fcInvalid, p+"filename must not contain invisible format characters such as U+202E")
	default:
		if kind := sendapi.BlockedExtension(fn); kind != "" {
			v.add(p+"filename", fcBlocked, "attachments of type "+kind+" are not accepted")
		}
		att.Filename = fn
	}
	if enc.Set && !enc.Null && enc.V != "base64" {
		v.add(p+"encoding", fcNotSupported, `encoding must be "base64"`)
	}
	if typ.Set && !typ.Null && typ.V != "" {
		att.ContentType = checkMediaType(v, p+"type", typ.V)
	}
	if !content.Set || content.Null || len(content.V) == 0 {
		v.add(p+"content", fcRequired, p+"content is required: the file, base64-encoded")
	} else if c, ok := sendapi.ParseBase64(content.V); !ok {
		v.add(p+"content", fcInvalid, p+"content must be non-empty standard base64")
	} else if kind := sendapi.SniffBlockedAt(c, c.Size()); kind != "" {
		v.add(p+"content", fcBlocked, "executables and archives are not accepted as attachments (content is "+kind+")")
	} else {
		att.Content = c
	}
	if len(v.errs) > before {
		return nil, nil
	}
	if att.ContentType == "" {
		att.ContentType = sendapi.GuessType(att.Filename)
	}
	return att, nil
}

// contentField reads a string member as field[string] does (same answer
// for a wrong type), but as the bytes of the request rather than a copy:
// the content of a large attachment is most of the request.
func contentField(o *object, name string) (opt[[]byte], error) {
	var out opt[[]byte]
	raw, ok := o.members[name]
	if !ok {
		return out, nil
	}
	out.Set = true
	raw = bytes.TrimSpace(raw)
	switch {
	case o.isNull(name):
		out.Null = true
	case len(raw) < 2 || raw[0] != '"':
		return out, errInvalidParam(o.path+name, "%s must be %s", o.path+name, typeName(""))
	default:
		out.V = sendapi.ContentText(raw)
	}
	return out, nil
}

// checkMediaType validates a MIME type override. Multipart and message
// types are refused: the part is sent base64-encoded, which RFC 2046
// forbids for them.
func checkMediaType(v *validator, f, s string) string {
	t, _, err := mime.ParseMediaType(s)
	switch {
	case len(s) > maxMediaType || err != nil || !strings.Contains(t, "/") || strings.ContainsAny(s, "\r\n"):
		v.add(f, fcInvalid, f+` must be a MIME type like "application/pdf"`)
	case strings.HasPrefix(t, "multipart/") || strings.HasPrefix(t, "message/"):
		v.add(f, fcNotSupported, f+" must not be a multipart or message type")
	default:
		// Parameters are dropped: the part gets its own (name), and a
		// charset cannot be vouched for in base64 content.
		return t
	}
	return ""
}
