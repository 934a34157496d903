package shape

import (
	"errors"
	"fmt"
	netmail "net/mail"
	"sort"
	"strings"
)

// SenderDefaults are a provider's advanced settings for sender fields
// (SPEC §2: from_email, from_name, reply_to_email, reply_to_name). A name
// without its address is ignored: a header cannot carry a name alone.
type SenderDefaults struct {
	FromEmail    string
	FromName     string
	ReplyToEmail string
	ReplyToName  string
}

// ErrBadAddress reports a configured or authorised address that is not a
// plain addr-spec, or a display name with control characters. Callers
// should treat it as a configuration fault, not as a problem of the message.
var ErrBadAddress = errors.New("shape: invalid address")

// ApplyDefaults fills From and/or Reply-To from d where msg lacks them and
// returns the effective From address (sentFrom, recorded on the attempt as
// sent_from_email; empty if the message has no usable From at all).
//
// A field counts as missing when it is absent or its value is blank; a blank
// one is replaced so the result never carries two From fields. Present
// fields are never altered, even when d has a display name and the message
// does not: the sender chose them. New fields are appended at the end of the
// header block with the message's own line ending; the body is untouched.
//
// On error out is msg unchanged.
func ApplyDefaults(msg []byte, d SenderDefaults) (out []byte, sentFrom string, err error) {
	rh := scanHeader(msg)
	vals, ok := quickValues(msg, rh, "From", "Reply-To")
	if !ok {
		// go-message refuses this header: its error says why.
		_, _, err := parseHeader(msg)
		if err == nil {
			err = errors.New("shape: malformed header") // unreachable: quickValues follows ReadHeader
		}
		return msg, "", err
	}
	get := func(key string) string {
		if key == "From" {
			return vals[0]
		}
		return vals[1]
	}
	var ss []splice
	var added [][]byte
	sentFrom = fromAddress(get("From"))
	fill := func(key, email, name string) error {
		if email == "" || strings.TrimSpace(get(key)) != "" {
			return nil
		}
		addr, err := checkAddress(email, name)
		if err != nil {
			return err
		}
		f := formatAddressField(key, addr, rh.nl)
		for _, rf := range rh.fields {
			if rf.key == key { // blank field: drop it, ours replaces it
				ss = append(ss, splice{start: rf.start, end: rf.end})
			}
		}
		added = append(added, f)
		if key == "From" {
			sentFrom = lowerDomain(addr.Address)
		}
		return nil
	}
	if err := fill("From", d.FromEmail, d.FromName); err != nil {
		return msg, "", err
	}
	if err := fill("Reply-To", d.ReplyToEmail, d.ReplyToName); err != nil {
		return msg, "", err
	}
	if len(added) == 0 {
		return msg, sentFrom, nil
	}
	// Removed blank fields all lie before rh.end, so once sorted the
	// insertion is last and the splices do not overlap.
	sort.Slice(ss, func(i, j int) bool { return ss[i].start < ss[j].start })
	ss = append(ss, rh.insertAt(msg, ss, added...))
	return applySplices(msg, ss), sentFrom, nil
}

// FromAddress returns the first address of msg's From field with its
// domain lower-cased, or "" when there is none or it cannot be read. The
// wiring uses it to decide whether the From domain is a verified domain.
func FromAddress(msg []byte) (string, error) {
	vals, ok := quickValues(msg, scanHeader(msg), "From")
	if !ok {
		_, _, err := parseHeader(msg)
		if err == nil {
			err = errors.New("shape: malformed header") // unreachable: quickValues follows ReadHeader
		}
		return "", err
	}
	return fromAddress(vals[0]), nil
}

// fromAddress extracts the first mailbox of a From value. Unparseable
// values fall back to the text between the last angle brackets, because a
// sloppy display name should not hide an otherwise obvious address.
func fromAddress(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if a, ok := plainAddress(v); ok {
		return lowerDomain(a)
	}
	if list, err := netmail.ParseAddressList(v); err == nil && len(list) > 0 {
		return lowerDomain(list[0].Address)
	}
	if i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i {
		v = v[i+1 : j]
	}
	if a, err := netmail.ParseAddress(v); err == nil {
		return lowerDomain(a.Address)
	}
	return ""
}

// checkAddress validates a configured address and display name before they
// are written into a header: CR/LF in either would be header injection.
func checkAddress(email, name string) (*netmail.Address, error) {
	a, err := netmail.ParseAddress(email)
	if err != nil || a.Name != "" || a.Address != strings.TrimSpace(email) {
		return nil, fmt.Errorf("%w: %q", ErrBadAddress, email)
	}
	if strings.ContainsFunc(name, isControl) {
		return nil, fmt.Errorf("%w: display name has control characters", ErrBadAddress)
	}
	return &netmail.Address{Name: strings.TrimSpace(name), Address: a.Address}, nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// lowerDomain lower-cases the domain only: local parts may be
// case-sensitive (RFC 5321 §2.4), domains are not.
func lowerDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr
	}
	return addr[:i] + strings.ToLower(addr[i:])
}
