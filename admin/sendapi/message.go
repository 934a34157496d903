// Package sendapi is the message of the HTTP Sending API once its JSON
// has been validated: the model (Message, Address, Attachment), the
// attachment content kept as base64 text and the checks that refuse
// executables and archives by name and by content, and the rendering as
// the RFC 5322 bytes the relay stores (BuildMIME). It knows nothing of
// HTTP: admin decodes and validates the request, answers it, and hands
// the relay what BuildMIME wrote.
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
