package sendapi

import (
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
)

// BuildMIME renders a validated message as the RFC 5322 bytes the relay
// stores and sends, with go-message doing the encodings:
//
//   - text only or HTML only: a single text/plain or text/html part;
//   - both: multipart/alternative, plain text first (the least preferred
//     alternative comes first, RFC 2046 §5.1.4);
//   - attachments: multipart/mixed around that, then one base64 part each.
//
// Text parts are UTF-8 quoted-printable; header values with non-ASCII
// characters are RFC 2047-encoded. Bcc is never written: it lives only in
// the envelope. The result uses CRLF line ends throughout and ends with one,
// as the relay requires.
func BuildMIME(in *Message, messageID string, now time.Time) ([]byte, error) {
	// go-message writes fields in the reverse order of setting, so they
	// are set bottom-up to read naturally (Date, From, To, … on top).
	var h mail.Header
	for i := len(in.Headers) - 1; i >= 0; i-- {
		h.SetText(in.Headers[i][0], in.Headers[i][1])
	}
	h.Set("MIME-Version", "1.0")
	h.SetMessageID(messageID)
	h.SetSubject(in.Subject)
	if in.ReplyTo != nil {
		h.SetAddressList("Reply-To", []*mail.Address{addr(*in.ReplyTo)})
	}
	if len(in.Cc) > 0 {
		cc := make([]*mail.Address, 0, len(in.Cc))
		for _, a := range in.Cc {
			cc = append(cc, addr(a))
		}
		h.SetAddressList("Cc", cc)
	}
	h.SetAddressList("To", []*mail.Address{addr(in.To)})
	h.SetAddressList("From", []*mail.Address{addr(in.From)})
	h.SetDate(now)

	var buf bytes.Buffer
	// Sized for the whole message up front: base64 takes 4/3 of an
	// attachment plus CRLF every 76 characters, and growing by doubling
	// would briefly hold the old and the new buffer, up to three times
	// the message.
	size := qpSize(in.HTML) + qpSize(in.Text) + 4096
	for _, a := range in.Attachments {
		size += int(a.Content.size)/57*78 + 78 + 512
	}
	buf.Grow(size)
	var err error
	if len(in.Attachments) == 0 {
		err = writeBody(&buf, h, in)
	} else {
		err = writeMixed(&buf, h, in)
	}
	if err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte("\r\n")) {
		buf.WriteString("\r\n")
	}
	return buf.Bytes(), nil
}

func addr(a Address) *mail.Address { return &mail.Address{Name: a.Name, Address: a.Email} }

// textPart is one body alternative.
type textPart struct {
	mediaType, body string
}

func (in *Message) parts() []textPart {
	var ps []textPart
	if in.Text != "" {
		ps = append(ps, textPart{"text/plain", in.Text})
	}
	if in.HTML != "" {
		ps = append(ps, textPart{"text/html", in.HTML})
	}
	return ps
}

// writeBody writes a message without attachments.
func writeBody(w io.Writer, h mail.Header, in *Message) error {
	ps := in.parts()
	if len(ps) == 1 {
		h.SetContentType(ps[0].mediaType, map[string]string{"charset": "utf-8"})
		pw, err := mail.CreateSingleInlineWriter(w, h)
		if err != nil {
			return err
		}
		return writeText(pw, ps[0].body)
	}
	iw, err := mail.CreateInlineWriter(w, h)
	if err != nil {
		return err
	}
	if err := writeParts(iw, ps); err != nil {
		return err
	}
	return iw.Close()
}

func writeParts(iw *mail.InlineWriter, ps []textPart) error {
	for _, p := range ps {
		var ph mail.InlineHeader
		ph.SetContentType(p.mediaType, map[string]string{"charset": "utf-8"})
		pw, err := iw.CreatePart(ph)
		if err != nil {
			return err
		}
		if err := writeText(pw, p.body); err != nil {
			return err
		}
	}
	return nil
}

// writeMixed writes a message with attachments.
func writeMixed(w io.Writer, h mail.Header, in *Message) error {
	mw, err := mail.CreateWriter(w, h)
	if err != nil {
		return err
	}
	ps := in.parts()
	if len(ps) == 1 {
		var ph mail.InlineHeader
		ph.SetContentType(ps[0].mediaType, map[string]string{"charset": "utf-8"})
		pw, err := mw.CreateSingleInline(ph)
		if err != nil {
			return err
		}
		if err := writeText(pw, ps[0].body); err != nil {
			return err
		}
	} else {
		iw, err := mw.CreateInline()
		if err != nil {
			return err
		}
		if err := writeParts(iw, ps); err != nil {
			return err
		}
		if err := iw.Close(); err != nil {
			return err
		}
	}
	for _, a := range in.Attachments {
		var ah mail.AttachmentHeader
		ah.SetContentType(a.ContentType, map[string]string{"name": a.Filename})
		ah.SetFilename(a.Filename)
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		// Decoded a few KiB at a time straight into the part's base64
		// encoder: the file is never held whole.
		if _, err := io.Copy(aw, a.Content.Reader()); err != nil {
			return err
		}
		if err := aw.Close(); err != nil {
			return err
		}
	}
	return mw.Close()
}

// writeText writes a text body with its line ends normalised to LF, which
// the quoted-printable encoder turns into CRLF; a stray CR would otherwise
// reach the wire as a bare CR, which SMTP servers refuse. It writes the
// runs between CRs as they are, so a large body is not copied.
func writeText(w io.WriteCloser, s string) error {
	for {
		i := strings.IndexByte(s, '\r')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(w, s[:i]); err != nil {
			return err
		}
		s = s[i+1:]
		if !strings.HasPrefix(s, "\n") { // a CR alone is a line end too
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
	}
	if _, err := io.WriteString(w, s); err != nil {
		return err
	}
	return w.Close()
}

// qpSize is at least the length of s as quoted-printable with CRLF line
// ends, so the MIME buffer is sized once: an escaped byte is three
// characters, a line end two, and a soft line break "=\r\n" comes at the
// latest every 73 characters.
func qpSize(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n' || c == '\r':
			n += 2
		case c == '=' || c < ' ' && c != '\t' || c > '~':
			n += 3
		default:
			n++
		}
	}
	return n + n/73*3 + 3
}
