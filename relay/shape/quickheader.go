package shape

// quickValues returns the first value of each of keys (canonical forms) in
// msg's header as parseHeader's go-message Header.Get would, and ok=false
// when go-message's ReadHeader would refuse the header: then the caller
// runs parseHeader for its error. It reads rh's offsets instead of building
// go-message's header (a field struct, key and value string for every
// field, every attempt), which is all ApplyDefaults needs when it has
// nothing to add or only checks From and Reply-To.
//
// ReadHeader's rules, as applied to the header block scanHeader found: the
// first line must not start with a space or tab; a field's first colon
// must be on its first line (one on a continuation line leaves CR/LF in the
// name, which it refuses); the name, trimmed of spaces and tabs, must be
// printable US-ASCII (33–126); an empty name is skipped. A value is the
// text after the colon, its lines trimmed of spaces and tabs, empty ones
// dropped, joined with single spaces. FuzzQuickValuesAsGoMessage holds
// this to go-message.
func quickValues(msg []byte, rh rawHeader, keys ...string) (vals []string, ok bool) {
	vals = make([]string, len(keys))
	var seen uint64 // keys already found (at most 64 of them)
	if len(rh.fields) > 0 && (msg[rh.fields[0].start] == ' ' || msg[rh.fields[0].start] == '\t') {
		return nil, false
	}
	for _, f := range rh.fields {
		if f.colon < 0 {
			return nil, false
		}
		name := trimSP(msg[f.start : f.start+f.colon])
		for _, c := range name {
			if c < 33 || c > 126 {
				return nil, false
			}
		}
		if len(name) == 0 {
			continue // ReadHeader skips a field with an empty name
		}
		for i, k := range keys {
			if seen&(1<<i) == 0 && f.key == k {
				vals[i] = unfoldValue(msg[f.start+f.colon+1 : f.end])
				seen |= 1 << i
				break
			}
		}
	}
	return vals, true
}

// unfoldValue is go-message's trimAroundNewlines over a field's raw value
// bytes: each line (its LF or CRLF ending removed) trimmed of spaces and
// tabs, empty ones dropped, the rest joined by single spaces.
func unfoldValue(v []byte) string {
	var out []byte
	for pos := 0; pos < len(v); {
		line := v[pos:]
		next := len(v)
		if i := indexLF(line); i >= 0 {
			line, next = line[:i], pos+i+1
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
		}
		pos = next
		line = trimSP(line)
		if len(line) == 0 {
			continue
		}
		if out == nil && next == len(v) {
			return string(line) // one line: a single copy
		}
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, line...)
	}
	return string(out)
}

func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// trimSP trims spaces and tabs at both ends, as go-message's trim does.
func trimSP(b []byte) []byte {
	i, n := 0, len(b)
	for i < n && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	for n > i && (b[n-1] == ' ' || b[n-1] == '\t') {
		n--
	}
	return b[i:n]
}
