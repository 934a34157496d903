package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"time"
)

// dotStuffBoth writes body in the given chunk sizes through textproto's
// DotWriter and through dotWriter and returns both outputs.
func dotStuffBoth(t *testing.T, body []byte, chunks []int) (want, got []byte) {
	var a, b bytes.Buffer
	ta := textproto.NewWriter(bufio.NewWriter(&a)).DotWriter()
	bw := bufio.NewWriter(&b)
	tb := newDotWriter(bw)
	for i, rest := 0, body; len(rest) > 0; i++ {
		n := len(rest)
		if len(chunks) > 0 {
			n = chunks[i%len(chunks)]
			if n > len(rest) || n <= 0 {
				n = len(rest)
			}
		}
		if _, err := ta.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		if m, err := tb.Write(rest[:n]); err != nil || m != n {
			t.Fatalf("dotWriter.Write = %d, %v; want %d", m, err, n)
		}
		rest = rest[n:]
	}
	ta.Close()
	tb.Close()
	return a.Bytes(), b.Bytes()
}

func TestDotWriterMatchesTextproto(t *testing.T) {
	cases := []string{
		"", ".", "\r", "\n", "\r\n", ".\r\n", "..", "a\r\n.\r\nb",
		"line\nbare lf\n.dot after lf\n", "a\r\rb\r\n", "x\r\r\r\n.y", "\r\r\n.",
		"no newline at end", "ends with cr\r", ".\r.\n.\r\n.", "\n\n\n.",
	}
	for _, c := range cases {
		for _, chunks := range [][]int{nil, {1}, {2}, {3, 1}} {
			want, got := dotStuffBoth(t, []byte(c), chunks)
			if !bytes.Equal(want, got) {
				t.Errorf("%q in chunks %v: got %q, textproto gives %q", c, chunks, got, want)
			}
		}
	}
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("ab.\r\n")
	for i := 0; i < 5000; i++ {
		body := make([]byte, rng.Intn(64))
		for j := range body {
			body[j] = alphabet[rng.Intn(len(alphabet))]
		}
		chunks := []int{1 + rng.Intn(8), 1 + rng.Intn(8)}
		want, got := dotStuffBoth(t, body, chunks)
		if !bytes.Equal(want, got) {
			t.Fatalf("%q in chunks %v: got %q, textproto gives %q", body, chunks, got, want)
		}
	}
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("a\r\n.b\n\r\r\n"), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		want, got := dotStuffBoth(t, body, []int{int(chunk%16) + 1})
		if !bytes.Equal(want, got) {
			t.Fatalf("got %q, textproto gives %q", got, want)
		}
	})
}

// upstreamDataRead is go-smtp v0.25.1's dataReader.Read (byte-wise), the
// reference the patched reader is compared and benchmarked against.
func upstreamDataRead(r *dataReader, b []byte) (n int, err error) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	return
}

// byteWiseDataRead is upstreamDataRead with patch 7 (a ".\r" not
// followed by "\n" keeps its CR; a CR after a CR may start a line end):
// the byte-wise reference of the patched reader's semantics.
func byteWiseDataRead(r *dataReader, b []byte) (n int, err error) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			b[n] = '\r'
			n++
			r.r.UnreadByte()
			r.state = stateCR
			continue
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			if c != '\r' {
				r.state = stateData
			}
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	return
}

// TestDataReaderRuns reads random DATA streams with the patched reader and
// with the byte-wise reference (upstream's loop plus patch 7) and wants
// the same body, error and leftover.
func TestDataReaderRuns(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	alphabet := []byte("ab.\r\n")
	for i := 0; i < 5000; i++ {
		body := make([]byte, rng.Intn(200))
		for j := range body {
			body[j] = alphabet[rng.Intn(len(alphabet))]
		}
		stream := append(append([]byte{}, body...), "\r\n.\r\nNEXT"...)
		read := func(readSize int, upstream bool) ([]byte, error, string) {
			br := bufio.NewReader(bytes.NewReader(stream))
			dr := &dataReader{r: br}
			var out []byte
			buf := make([]byte, readSize)
			var err error
			for {
				var n int
				if upstream {
					n, err = byteWiseDataRead(dr, buf)
				} else {
					n, err = dr.Read(buf)
				}
				out = append(out, buf[:n]...)
				if err != nil {
					break
				}
			}
			rest, _ := io.ReadAll(br)
			return out, err, string(rest)
		}
		readSize := 1 + rng.Intn(300)
		want, wantErr, wantRest := read(readSize, true)
		got, gotErr, gotRest := read(readSize, false)
		if !bytes.Equal(want, got) || wantErr != gotErr || wantRest != gotRest {
			t.Fatalf("%q: got %q %v rest %q; byte-wise %q %v rest %q", stream, got, gotErr, gotRest, want, wantErr, wantRest)
		}
	}
}

// timeoutReader returns data, then a timeout error, as a net.Conn does
// when a read deadline expires in the middle of a line.
type timeoutReader struct{ data []byte }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (r *timeoutReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, timeoutErr{}
	}
	n := copy(b, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadCommandLineDiscardsUnfinishedLine(t *testing.T) {
	r := bufio.NewReaderSize(&timeoutReader{data: []byte("NOOP\r\nMAIL FROM:<a@exa")}, 16)
	line, err := readCommandLine(r, 2000)
	if line != "NOOP" || err != nil {
		t.Fatalf("first line: %q %v", line, err)
	}
	line, err = readCommandLine(r, 2000)
	if line != "" || !errors.As(err, new(timeoutErr)) {
		t.Fatalf("a line cut by a read timeout: got %q, %v; want the timeout and no line", line, err)
	}

	long := "MAIL FROM:<a@example.com>" + strings.Repeat(" ", 5000) + "\r\n"
	lr := &lineLimitReader{R: strings.NewReader(long), LineLimit: 2000}
	line, err = readCommandLine(bufio.NewReader(lr), 2000)
	if line != "" || err != ErrTooLongLine {
		t.Fatalf("a line over the limit: got %d bytes, %v; want ErrTooLongLine and no line", len(line), err)
	}
	line, err = readCommandLine(bufio.NewReader(strings.NewReader("a\nb\r\n")), 10)
	if line != "a" || err != nil {
		t.Fatalf("bare LF line: %q %v", line, err)
	}
}

func TestLineLimitReaderCounts(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		ok    bool
	}{
		{"abcd\n", 4, true}, {"abcde\n", 4, false}, {"abc\nabc\n", 4, true}, {"abcd\nabcd\n", 4, false},
		{"abcde", 5, true}, {"abcdef", 5, false}, {"\n\n\n", 1, true},
	} {
		lr := &lineLimitReader{R: strings.NewReader(tc.in), LineLimit: tc.limit}
		_, err := io.ReadAll(lr)
		if (err == nil) != tc.ok {
			t.Errorf("%q limit %d: err %v, want ok=%v", tc.in, tc.limit, err, tc.ok)
		}
	}
}

// benchBody is a 100 KiB message of 76-character lines, some dot-led.
func benchBody() []byte {
	var b bytes.Buffer
	for b.Len() < 100<<10 {
		b.WriteString(".0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n")
		b.WriteString("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz0123456789ab\r\n")
	}
	return b.Bytes()
}

func BenchmarkDotWriter(b *testing.B) {
	body := benchBody()
	bw := bufio.NewWriter(io.Discard)
	b.Run("upstream", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for i := 0; i < b.N; i++ {
			w := textproto.NewWriter(bw).DotWriter()
			w.Write(body)
			w.Close()
		}
	})
	b.Run("patched", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for i := 0; i < b.N; i++ {
			w := newDotWriter(bw)
			w.Write(body)
			w.Close()
		}
	})
}

func BenchmarkDataReader(b *testing.B) {
	var stuffed bytes.Buffer
	w := newDotWriter(bufio.NewWriter(&stuffed))
	w.Write(benchBody())
	w.Close()
	stream := stuffed.Bytes()
	buf := make([]byte, 32<<10)
	for _, upstream := range []bool{true, false} {
		name := "patched"
		if upstream {
			name = "upstream"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			br := bufio.NewReader(nil)
			for i := 0; i < b.N; i++ {
				br.Reset(bytes.NewReader(stream))
				dr := &dataReader{r: br}
				for {
					var err error
					if upstream {
						_, err = upstreamDataRead(dr, buf)
					} else {
						_, err = dr.Read(buf)
					}
					if err != nil {
						break
					}
				}
			}
		})
	}
}

// TestDataReaderBareCR pins patch 7: a bare CR after a stuffing dot reaches
// the backend, and CR CR LF . CR LF ends DATA as RFC 5321 says.
func TestDataReaderBareCR(t *testing.T) {
	for _, c := range []struct{ stream, body, rest string }{
		{"a\r\n.\rMAIL\r\n.\r\nNEXT", "a\r\n\rMAIL\r\n", "NEXT"},
		{".\rx\r\n.\r\nNEXT", "\rx\r\n", "NEXT"},
		{"a\r\r\n.\r\nNEXT", "a\r\r\n", "NEXT"},
		{"a\r\r\r\n.\r\nNEXT", "a\r\r\r\n", "NEXT"},
		{"a\r\n.\r\r\n.\r\nNEXT", "a\r\n\r\r\n", "NEXT"},
		{"a\r.\rb\r\n.\r\nNEXT", "a\r.\rb\r\n", "NEXT"},
	} {
		for _, size := range []int{1, 2, 64} {
			br := bufio.NewReader(bytes.NewReader([]byte(c.stream)))
			dr := &dataReader{r: br}
			var out []byte
			buf := make([]byte, size)
			var err error
			for err == nil {
				var n int
				n, err = dr.Read(buf)
				out = append(out, buf[:n]...)
			}
			rest, _ := io.ReadAll(br)
			if err != io.EOF || string(out) != c.body || string(rest) != c.rest {
				t.Errorf("%q (reads of %d): body %q err %v rest %q, want %q, EOF, %q", c.stream, size, out, err, rest, c.body, c.rest)
			}
		}
	}
}

// TestParsePathSourceRoute pins patch 8: a source route is refused, not
// dropped.
func TestParsePathSourceRoute(t *testing.T) {
	for _, s := range []string{"<@relay.example:user@example.com>", "<@a,@b:user@example.com>"} {
		p := parser{s: s}
		if got, err := p.parsePath(); err != errSourceRoute {
			t.Errorf("%q: got %q %v, want errSourceRoute", s, got, err)
		}
	}
}

// pipelinePeer runs a scripted server on one end of a pipe: the greeting,
// EHLO answered with PIPELINING, then for each step it reads lines (each
// read bounded, so a client waiting for a reply it was not sent fails the
// test instead of hanging) and writes the step's replies.
func pipelinePeer(t *testing.T, steps []struct{ lines, reply string }) (*Client, chan error) {
	t.Helper()
	cc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() {
		defer sc.Close()
		r := bufio.NewReader(sc)
		say := func(s string) error { _, err := io.WriteString(sc, s); return err }
		if err := say("220 peer\r\n"); err != nil {
			done <- err
			return
		}
		if _, err := r.ReadString('\n'); err != nil {
			done <- err
			return
		}
		if err := say("250-peer\r\n250 PIPELINING\r\n"); err != nil {
			done <- err
			return
		}
		for _, st := range steps {
			for _, want := range strings.Split(st.lines, "|") {
				sc.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, err := r.ReadString('\n')
				if err != nil {
					done <- fmt.Errorf("reading %q before any reply: %v", want, err)
					return
				}
				if !strings.HasPrefix(got, want) {
					done <- fmt.Errorf("read %q, want %q", got, want)
					return
				}
			}
			if err := say(st.reply); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	c := NewClient(cc)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	return c, done
}

// TestMailRcptDataOneRoundTrip: MAIL, both RCPTs and DATA reach the server
// before it answers any of them (patch 11), a refused recipient is
// reported with the others accepted, and the body follows the 354.
func TestMailRcptDataOneRoundTrip(t *testing.T) {
	c, done := pipelinePeer(t, []struct{ lines, reply string }{
		{"MAIL FROM:<a@x>|RCPT TO:<b@y>|RCPT TO:<c@y>|DATA", "250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go on\r\n"},
		{"Subject: hi|\r\n|body|.\r\n", "250 2.0.0 queued as 42\r\n"},
	})
	res, err := c.MailRcptData("a@x", nil, []string{"b@y", "c@y"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replies != 4 || res.RcptErrs[0] == nil || res.RcptErrs[1] != nil || res.Data == nil {
		t.Fatalf("result %+v", res)
	}
	if se := res.RcptErrs[0].(*SMTPError); se.Code != 550 {
		t.Fatalf("refused recipient: %v", se)
	}
	io.WriteString(res.Data, "Subject: hi\r\n\r\nbody\r\n")
	resp, err := res.Data.CloseWithResponse()
	if err != nil || !strings.Contains(resp.StatusText, "queued as 42") {
		t.Fatalf("final reply %+v, %v", resp, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMailRcptDataRefused: a refused DATA comes back as DataErr; a server
// that answers 354 when every recipient was refused gets an empty body
// ending, so the session stays in step for the next command.
func TestMailRcptDataRefused(t *testing.T) {
	c, done := pipelinePeer(t, []struct{ lines, reply string }{
		{"MAIL FROM:<a@x>|RCPT TO:<b@y>|DATA", "250 ok\r\n550 no\r\n554 5.5.1 no valid recipients\r\n"},
		{"MAIL FROM:<a@x>|RCPT TO:<b@y>|DATA", "250 ok\r\n550 no\r\n354 go on\r\n"},
		{".\r\n", "554 nothing\r\n"},
		{"NOOP", "250 ok\r\n"},
	})
	res, err := c.MailRcptData("a@x", nil, []string{"b@y"})
	if err != nil || res.Data != nil || res.DataErr == nil || res.DataErr.(*SMTPError).Code != 554 {
		t.Fatalf("refused DATA: %+v, %v", res, err)
	}
	res, err = c.MailRcptData("a@x", nil, []string{"b@y"})
	if err != nil || res.Data != nil || res.DataErr == nil {
		t.Fatalf("354 after no recipient: %+v, %v", res, err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("the session is out of step: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestEnvelopeLinesAllocateTheirSize (patch 12): MAIL and RCPT lines are
// built in buffers of about their own size, not 2 KiB each, and read as
// before, parameters included.
func TestEnvelopeLinesAllocateTheirSize(t *testing.T) {
	c := &Client{didHello: true, ext: map[string]string{"8BITMIME": "", "SIZE": "", "DSN": ""}}
	mail, err := c.mailLine("sender@example.com", &MailOptions{Size: 2048, Return: DSNReturnHeaders})
	if want := "MAIL FROM:<sender@example.com> BODY=8BITMIME SIZE=2048 RET=HDRS"; err != nil || mail != want {
		t.Fatalf("MAIL line %q (%v), want %q", mail, err, want)
	}
	rcpt, err := c.rcptLine("rcpt@example.com", &RcptOptions{Notify: []DSNNotify{DSNNotifyFailure}})
	if want := "RCPT TO:<rcpt@example.com> NOTIFY=FAILURE"; err != nil || rcpt != want {
		t.Fatalf("RCPT line %q (%v), want %q", rcpt, err, want)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 200
	for i := 0; i < n; i++ {
		c.mailLine("sender@example.com", nil)
		c.rcptLine("rcpt@example.com", nil)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 512 {
		t.Errorf("a MAIL and a RCPT line allocated %d bytes, want under 512", per)
	}
}

// countingWriter counts the writes that reach it (the connection).
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

// TestDotWriterFewWrites: a 100 KiB body written a line at a time, as the
// relay does, reaches the connection in a few large writes (one system
// call each), not one per 4 KiB of the connection's buffer (26 before
// this patch), with output byte for byte textproto's; and the writer
// refuses use after Close instead of writing into the next command.
func TestDotWriterFewWrites(t *testing.T) {
	var body []byte
	for len(body) < 100<<10 {
		body = append(body, strings.Repeat("x", 76)+"\r\n"...)
		body = append(body, ".leading dot\r\n"...)
	}
	conn := &countingWriter{}
	w := newDotWriter(bufio.NewWriter(conn)) // 4 KiB, as textproto.NewConn's
	for rest := body; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n') + 1
		if _, err := w.Write(rest[:i]); err != nil {
			t.Fatal(err)
		}
		rest = rest[i:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want, _ := dotStuffBoth(t, body, nil)
	if !bytes.Equal(conn.Bytes(), want) {
		t.Fatal("output differs from textproto's DotWriter")
	}
	if max := len(want)/dotBufSize + 2; conn.writes > max {
		t.Fatalf("%d KiB reached the connection in %d writes, want at most %d", len(want)>>10, conn.writes, max)
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if err := w.Close(); err == nil {
		t.Fatal("a second Close succeeded")
	}
	if bytes.Contains(conn.Bytes(), []byte("late")) {
		t.Fatal("a write after Close reached the connection")
	}
}

// failingWriter takes limit bytes, then fails every write.
type failingWriter struct {
	bytes.Buffer
	limit int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if room := f.limit - f.Len(); room < len(p) {
		if room < 0 {
			room = 0
		}
		f.Buffer.Write(p[:room])
		return room, errors.New("connection reset")
	}
	return f.Buffer.Write(p)
}

// TestDotWriterPooledAfterError: a body whose connection failed halfway
// (its staging buffer still holding part of it when Close gives up)
// leaves nothing of itself in the pooled buffer: the next DATA on another
// connection carries its own body only.
func TestDotWriterPooledAfterError(t *testing.T) {
	secret := bytes.Repeat([]byte("SECRET-BODY-A\r\n"), 5000) // ~73 KiB
	for _, limit := range []int{0, 100, 34 << 10} {
		for i := 0; i < 4; i++ { // the pool may hand out another buffer: try a few
			bad := newDotWriter(bufio.NewWriter(&failingWriter{limit: limit}))
			bad.Write(secret[:len(secret)/2+7]) // may fail: the staged rest stays
			if err := bad.Close(); err == nil {
				t.Fatalf("limit %d: Close on a failed connection succeeded", limit)
			}
			var conn bytes.Buffer
			good := newDotWriter(bufio.NewWriter(&conn))
			if _, err := good.Write([]byte("hello\r\n")); err != nil {
				t.Fatal(err)
			}
			if err := good.Close(); err != nil {
				t.Fatal(err)
			}
			if got := conn.String(); got != "hello\r\n.\r\n" {
				t.Fatalf("limit %d: next message's DATA carried %d bytes: %.60q", limit, len(got), got)
			}
		}
	}
}

// upstreamResponse is v0.25.1's writeResponse without the write
// deadline: what patch 15 must write.
func upstreamResponse(w *textproto.Writer, code int, enhCode EnhancedCode, text ...string) {
	if enhCode == EnhancedCodeNotSet {
		cat := code / 100
		switch cat {
		case 2, 4, 5:
			enhCode = EnhancedCode{cat, 0, 0}
		default:
			enhCode = NoEnhancedCode
		}
	}
	text = strings.Split(strings.Join(text, "\n"), "\n")
	lastLineIndex := len(text) - 1
	for i := 0; i < lastLineIndex; i++ {
		w.PrintfLine("%d-%v", code, text[i])
	}
	if enhCode == NoEnhancedCode {
		w.PrintfLine("%d %v", code, text[lastLineIndex])
	} else {
		w.PrintfLine("%d %v.%v.%v %v", code, enhCode[0], enhCode[1], enhCode[2], text[lastLineIndex])
	}
}

// recordingWriter keeps each Write apart, to compare the writes made.
type recordingWriter struct{ writes []string }

func (r *recordingWriter) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

// TestWriteResponseMatchesUpstream: patch 15 writes the same replies, in
// the same writes, as upstream's Join/Split and PrintfLine did.
func TestWriteResponseMatchesUpstream(t *testing.T) {
	long := strings.Repeat("x", 3*replyBufferSize)
	cases := []struct {
		code int
		enh  EnhancedCode
		text []string
	}{
		{250, EnhancedCode{2, 0, 0}, []string{"OK: queued as eml_1"}},
		{354, NoEnhancedCode, []string{"Go ahead. End your data with <CR><LF>.<CR><LF>"}},
		{250, NoEnhancedCode, []string{"Hello localhost", "PIPELINING", "8BITMIME", "SIZE 1000"}},
		{550, EnhancedCode{5, 7, 1}, []string{"first\nsecond", "", "third\n"}},
		{421, EnhancedCode{4, 4, 2}, nil},
		{220, EnhancedCode{-1, 10, 123}, []string{""}},
		{-7, EnhancedCode{0, 0, 0}, []string{"\n\n"}},
		{451, EnhancedCodeNotSet, []string{"later"}},
		{599, EnhancedCode{9, 99, 999}, []string{"a", "b"}},
		{554, EnhancedCode{5, 0, 0}, []string{long, "short", long}},
	}
	for _, tc := range cases {
		var got, want recordingWriter
		upstreamResponse(textproto.NewWriter(bufio.NewWriterSize(&want, replyBufferSize)), tc.code, tc.enh, tc.text...)
		c := &Conn{server: &Server{}}
		c.text = &textproto.Conn{Writer: *textproto.NewWriter(bufio.NewWriterSize(&got, replyBufferSize))}
		c.writeResponse(tc.code, tc.enh, tc.text...)
		if strings.Join(got.writes, "") != strings.Join(want.writes, "") {
			t.Errorf("%d %v %q:\ngot  %q\nwant %q", tc.code, tc.enh, tc.text, got.writes, want.writes)
		} else if len(tc.text) == 0 || len(tc.text[0]) < replyBufferSize {
			// Lines within the buffer: one write per line, as upstream's
			// flush per PrintfLine made.
			if len(got.writes) != len(want.writes) {
				t.Errorf("%d %q: %d writes, want %d", tc.code, tc.text, len(got.writes), len(want.writes))
			}
		}
	}
	// A one-line reply allocates nothing.
	c := &Conn{server: &Server{}}
	c.text = &textproto.Conn{Writer: *textproto.NewWriter(bufio.NewWriterSize(io.Discard, replyBufferSize))}
	if a := testing.AllocsPerRun(100, func() { c.writeResponse(250, EnhancedCode{2, 0, 0}, "OK: queued") }); a != 0 {
		t.Errorf("writeResponse: %v allocations, want 0", a)
	}
}
