package shape

import (
	"bytes"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// link is one trackable href value found in an HTML document.
type link struct {
	start, end int    // the attribute value bytes, quotes and outer space excluded
	url        string // what the recipient's client would follow
}

// csMode says how far the bytes of an HTML part can be read as ASCII.
type csMode int

const (
	csUTF8        csMode = iota // UTF-8, US-ASCII, or unlabelled
	csASCIICompat               // ISO-8859-x, Windows-125x, Shift_JIS, GBK...: ASCII bytes mean ASCII
	csISO2022                   // ASCII until an escape sequence shifts out
	csUnsupported               // UTF-16/32, UTF-7, HZ: tags are not ASCII bytes
)

// charsetMode classifies a part's charset. We never convert the part: the
// bytes that make up tags, attribute names and URLs are ASCII in every
// ASCII-compatible charset (multibyte trail bytes never fall on < > = " '
// or white space), so the original bytes can be tokenized as they are.
func charsetMode(cs string) csMode {
	cs = strings.ToLower(strings.TrimSpace(cs))
	switch {
	case cs == "" || cs == "utf-8" || cs == "utf8" || cs == "us-ascii" || cs == "ascii":
		return csUTF8
	case strings.HasPrefix(cs, "iso-2022"):
		return csISO2022
	case strings.HasPrefix(cs, "utf-16"), strings.HasPrefix(cs, "utf-32"), strings.HasPrefix(cs, "ucs-"),
		strings.HasPrefix(cs, "utf-7"), strings.HasPrefix(cs, "unicode"), strings.HasPrefix(cs, "hz"):
		return csUnsupported
	}
	return csASCIICompat
}

// findLinks returns the trackable links of doc in document order. It uses
// the x/net/html tokenizer, so script, style, comments and broken markup
// are read the way a browser reads them, but it locates each attribute value
// in the original bytes itself and never re-renders any HTML.
func findLinks(doc []byte, cs csMode) []link {
	scan := doc
	if cs == csISO2022 {
		var ok bool
		if scan, ok = maskISO2022(doc); !ok {
			return nil
		}
	}
	z := html.NewTokenizer(bytes.NewReader(scan))
	var links []link
	off := 0
	for {
		tt := z.Next()
		start := off
		off += len(z.Raw())
		if tt == html.ErrorToken {
			break
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, more := z.TagName()
		if !more || (string(name) != "a" && string(name) != "area") {
			continue
		}
		var keys []string
		var href string
		hrefIdx, notrack := -1, false
		for more {
			var k, v []byte
			k, v, more = z.TagAttr()
			switch string(k) {
			case "href":
				hrefIdx, href = len(keys), string(v)
			case "data-smtpmux-notrack":
				notrack = true
			}
			keys = append(keys, string(k))
		}
		if notrack || hrefIdx < 0 {
			continue
		}
		spans := scanAttrs(scan[start:off])
		if len(spans) != len(keys) {
			continue // our reading of the tag differs from the tokenizer's: hands off
		}
		same := true
		for i, s := range spans {
			same = same && s.key == keys[i]
		}
		// Literal white space around the value is not part of the URL;
		// leaving it in place keeps every edit on one line.
		vs, ve := start+spans[hrefIdx].vs, start+spans[hrefIdx].ve
		for vs < ve && isHTMLSpace(doc[vs]) {
			vs++
		}
		for ve > vs && isHTMLSpace(doc[ve-1]) {
			ve--
		}
		u, trackable := trackableURL(href, doc[vs:ve], scan[vs:ve], cs)
		if same && trackable && bytes.IndexAny(doc[vs:ve], "\r\n") < 0 {
			links = append(links, link{start: vs, end: ve, url: u})
		}
	}
	if off != len(doc) {
		return nil // the tokenizer did not account for every byte: offsets unreliable
	}
	return links
}

// trackableURL decides whether an href value is an absolute http(s) URL we
// may rewrite, and returns it in the form handed to the token function.
func trackableURL(v string, raw, scanned []byte, cs csMode) (string, bool) {
	u := strings.Trim(v, "\t\n\f\r ")
	if strings.ContainsAny(u, "\t\n\r") {
		return "", false
	}
	lu := strings.ToLower(u)
	if !strings.HasPrefix(lu, "http://") && !strings.HasPrefix(lu, "https://") {
		return "", false
	}
	if p, err := url.Parse(u); err != nil || p.Host == "" {
		return "", false
	}
	switch cs {
	case csUTF8:
		if !utf8.ValidString(u) {
			return "", false
		}
	default:
		// Without a charset decoder we cannot turn non-ASCII bytes into
		// the URL the client would build; such links stay untracked.
		if !bytes.Equal(raw, scanned) {
			return "", false
		}
		for _, c := range raw {
			if c >= 0x80 || c == 0x1b {
				return "", false
			}
		}
	}
	return u, true
}

// attrSpan is an attribute of a raw start tag, with its value offsets.
type attrSpan struct {
	key    string
	vs, ve int
}

// scanAttrs re-reads a raw start tag ("<a href=x ...>") with the same state
// machine as x/net/html's Tokenizer.readTag (WHATWG §13.2.5.32-38), because
// the tokenizer reports attribute values but not where they are. Keys are
// lower-cased and repeated keys dropped, as the tokenizer does, so the two
// lists can be compared entry by entry.
func scanAttrs(tag []byte) []attrSpan {
	i := 2 // '<' and the first byte of the name, as the tokenizer starts readTagName
	skipWS := func() {
		for i < len(tag) && isHTMLSpace(tag[i]) {
			i++
		}
	}
	for i < len(tag) && !isHTMLSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	var out []attrSpan
	seen := map[string]bool{}
	for skipWS(); i < len(tag) && tag[i] != '>'; skipWS() {
		// Attribute name: a leading '=' belongs to the name.
		ks := i
		for i < len(tag) {
			c := tag[i]
			if (c == '=' && i > ks) || isHTMLSpace(c) || c == '/' || c == '>' {
				break
			}
			i++
		}
		key := asciiLower(tag[ks:i])
		vs, ve := i, i
		skipWS()
		switch {
		case i >= len(tag):
		case tag[i] == '/':
			i++ // self-closing solidus, consumed as a nameless attribute
		case tag[i] != '=':
		default:
			i++
			skipWS()
			switch {
			case i >= len(tag) || tag[i] == '>':
			case tag[i] == '"' || tag[i] == '\'':
				q := tag[i]
				i++
				vs = i
				for i < len(tag) && tag[i] != q {
					i++
				}
				ve = i
				if i < len(tag) {
					i++
				}
			default:
				vs = i
				for i < len(tag) && !isHTMLSpace(tag[i]) && tag[i] != '>' {
					i++
				}
				ve = i
			}
		}
		if key != "" && !seen[key] {
			seen[key] = true
			out = append(out, attrSpan{key: key, vs: vs, ve: ve})
		}
	}
	return out
}

// maskISO2022 returns a copy of doc in which bytes inside shifted
// (double-byte) runs are replaced by 'x'. Those runs reuse ASCII byte
// values, so a '<' there is half of a kanji, not a tag; masking keeps every
// offset while hiding them from the tokenizer. Only the escape sequences of
// ISO-2022-JP (RFC 1468, RFC 1554) and ISO-2022-KR (RFC 1557) are known;
// anything else reports false and the part is left alone, since guessing
// how a client decodes invalid input could put our edit inside text.
func maskISO2022(doc []byte) ([]byte, bool) {
	out := bytes.Clone(doc)
	shifted := false
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch {
		case c == 0x1b:
			seq := out[i+1 : min(i+4, len(out))]
			switch {
			case bytes.HasPrefix(seq, []byte("(B")), bytes.HasPrefix(seq, []byte("(J")):
				shifted, i = false, i+2 // ASCII, JIS-Roman
			case bytes.HasPrefix(seq, []byte("(I")), bytes.HasPrefix(seq, []byte("$@")),
				bytes.HasPrefix(seq, []byte("$B")), bytes.HasPrefix(seq, []byte("$A")):
				shifted, i = true, i+2 // half-width katakana, JIS X 0208, GB 2312
			case len(seq) == 3 && seq[0] == '$' && seq[1] == '(' && seq[2] >= 'A' && seq[2] <= 'Z':
				shifted, i = true, i+3 // JIS X 0212 / 0213 planes
			case bytes.Equal(seq, []byte("$)C")):
				i += 3 // KR: designates G1 only; SO/SI do the shifting
			default:
				return nil, false
			}
		case c == 0x0e: // SO (ISO-2022-KR)
			shifted = true
		case c == 0x0f: // SI
			shifted = false
		case shifted && c != '\r' && c != '\n':
			out[i] = 'x'
		}
	}
	return out, true
}

// isHTMLSpace is the tokenizer's notion of white space inside tags.
func isHTMLSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' }

// asciiLower lower-cases ASCII letters only, like the tokenizer does for
// attribute names; strings.ToLower would also fold non-ASCII letters and
// could make our key list differ from the tokenizer's.
func asciiLower(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if c >= 'A' && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}
