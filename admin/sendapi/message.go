// Package sendapi is the HTTP Sending API: POST /api/v1/emails/send and
// /emails/send/batch (Handler), mounted by admin's Server. It
// authenticates sending keys and mailbox passwords through the relay
// (Sender), refuses root keys, bounds the request bytes sends hold at
// once (the send budget), decodes and validates the JSON into a Message
// (attachments kept as base64 text, executables and archives refused by
// name and by content), renders it as the RFC 5322 bytes the relay stores
// (BuildMIME) and hands them to the relay. Batches are one request of up
// to 100 messages with a result each. The envelope, JSON decoding and
// idempotency are internal/httpapi's, shared with the Management API.
package sendapi

// Address is a validated address with an optional display name.
type Address struct{ Email, Name string }

// Message is one validated message.
type Message struct {
	From, To    Address
	Cc, Bcc     []Address
	ReplyTo     *Address
	ReturnPath  string
	Subject     string
	HTML, Text  string
	Headers     [][2]string // custom headers, sorted by name
	Attachments []Attachment
}

// Recipients is the envelope: To, Cc and Bcc (the relay folds duplicates).
func (in *Message) Recipients() []string {
	out := []string{in.To.Email}
	for _, a := range append(append([]Address{}, in.Cc...), in.Bcc...) {
		out = append(out, a.Email)
	}
	return out
}

// Attachment is one accepted attachment. Its content stays base64 text
// until BuildMIME writes it (content.go).
type Attachment struct {
	Filename    string
	ContentType string
	Content     Content
}
