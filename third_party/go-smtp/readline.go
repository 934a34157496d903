package smtp

import (
	"bufio"
	"bytes"
)

// readCommandLine reads one command line (without its CRLF or LF).
//
// smtpmux patch: textproto.Reader.ReadLine cannot be used here. It sits on
// bufio.Reader.ReadLine, which returns the bytes read so far as a complete
// line, with a nil error, when the read fails in the middle of a line. A
// read deadline expiring mid-line (a client trickling a command) or
// lineLimitReader's ErrTooLongLine (an over-long command) therefore had
// their fragment run as a command, and the error was lost. Here a failed
// read discards the unfinished line and returns the error, so the caller
// answers 421 or 500 and closes the connection.
func readCommandLine(r *bufio.Reader, maxLen int) (string, error) {
	var long []byte
	for {
		frag, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, frag...)
			if maxLen > 0 && len(long) > maxLen {
				return "", ErrTooLongLine
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if long != nil {
			frag = append(long, frag...)
		}
		frag = bytes.TrimSuffix(frag, []byte{'\n'})
		frag = bytes.TrimSuffix(frag, []byte{'\r'})
		return string(frag), nil
	}
}
