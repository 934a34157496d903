package shape

import "strings"

// plainAddress is fromAddress's answer for the plain forms most From
// fields take — local@domain, <local@domain>, or plain words before
// <local@domain> — where local part and domain are dot-atoms of ASCII
// atext and the words ASCII atext (no quoted strings, comments, encoded
// words, groups, lists or non-ASCII), with ok false for anything else.
// net/mail parses these to the same address (TestPlainAddressMatchesNetMail),
// but its parse was 6 % of the objects the daemon allocated per relayed
// message (issue 19).
func plainAddress(v string) (addr string, ok bool) {
	if strings.HasSuffix(v, ">") {
		i := strings.LastIndexByte(v, '<')
		if i < 0 {
			return "", false
		}
		for j := 0; j < i; j++ {
			// '=' could start an RFC 2047 word, which net/mail decodes
			// (and may refuse).
			if c := v[j]; c != ' ' && c != '\t' && (c == '=' || !isPlainAtext(c)) {
				return "", false
			}
		}
		v = v[i+1 : len(v)-1]
	}
	at := strings.IndexByte(v, '@')
	if at < 0 || !isDotAtom(v[:at]) || !isDotAtom(v[at+1:]) {
		return "", false
	}
	return v, true
}

// isDotAtom reports whether s is an RFC 5322 dot-atom of ASCII atext.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isPlainAtext(s[i]) {
			return false
		}
	}
	return true
}

// isPlainAtext reports whether c is printable ASCII other than an RFC 5322
// special, '.' included (net/mail's isAtext with dots, ASCII only).
func isPlainAtext(c byte) bool {
	if c < '!' || c > '~' {
		return false
	}
	return !strings.ContainsRune(`()<>[]:;@\,"`, rune(c))
}
