package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// client is a minimal SMTP client built for throughput: the message is
// written with one buffered write (it is dot-stuffed only if it needs to be),
// where net/textproto's DotWriter walks the body byte by byte and would make
// the driver, not the system under test, the bottleneck for large messages.
type client struct {
	conn    net.Conn
	wsize   int // write buffer size (0: 64 KiB, for whole message bodies)
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	ext     map[string]bool
}

// replyError is an SMTP reply other than the one expected; the session stays
// usable after RSET.
type replyError struct {
	code int
	text string
}

func (e *replyError) Error() string { return fmt.Sprintf("SMTP %d %s", e.code, e.text) }

// dial connects, reads the greeting, says EHLO and, as configured, runs
// STARTTLS and AUTH PLAIN.
func dial(o options) (*client, error) { return dialFrom(o, nil, 0) }

// dialFrom is dial from a given local address (nil: the system's choice)
// and with a write buffer of wsize bytes (0: 64 KiB).
func dialFrom(o options, local net.Addr, wsize int) (*client, error) {
	d := net.Dialer{Timeout: o.timeout, LocalAddr: local}
	conn, err := d.Dial("tcp", o.addr)
	if err != nil {
		return nil, err
	}
	c := &client{timeout: o.timeout, wsize: wsize}
	c.setConn(conn)
	err = c.handshake(o)
	if err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *client) handshake(o options) error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.reply(220); err != nil {
		return err
	}
	if err := c.ehlo(); err != nil {
		return err
	}
	if o.startTLS {
		if err := c.cmd(220, "STARTTLS"); err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(o.addr)
		tc := tls.Client(c.conn, &tls.Config{ServerName: host, InsecureSkipVerify: o.insecure})
		if err := tc.Handshake(); err != nil {
			return err
		}
		c.setConn(tc)
		if err := c.ehlo(); err != nil {
			return err
		}
	}
	if o.pass != "" {
		resp := base64.StdEncoding.EncodeToString([]byte("\x00" + o.user + "\x00" + o.pass))
		if err := c.cmd(235, "AUTH PLAIN "+resp); err != nil {
			return err
		}
	}
	return nil
}

func (c *client) setConn(conn net.Conn) {
	c.conn = conn
	c.r = bufio.NewReaderSize(conn, 4096)
	ws := c.wsize
	if ws == 0 {
		ws = 64 << 10
	}
	c.w = bufio.NewWriterSize(conn, ws)
}

// ehlo greets the server and records its extensions.
func (c *client) ehlo() error {
	c.write("EHLO smtpload.localdomain")
	text, err := c.reply(250)
	if err != nil {
		return err
	}
	c.ext = map[string]bool{}
	for _, l := range strings.Split(text, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			c.ext[strings.ToUpper(f[0])] = true
		}
	}
	return nil
}

func (c *client) write(line string) {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
}

// cmd sends one command and reads its reply.
func (c *client) cmd(want int, line string) error {
	c.write(line)
	_, err := c.reply(want)
	return err
}

// reply flushes pending output and reads one (possibly multi-line) reply,
// returning its text lines joined by "\n".
func (c *client) reply(want int) (string, error) {
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	var text strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return "", fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return "", fmt.Errorf("malformed reply %q", line)
		}
		if text.Len() > 0 {
			text.WriteByte('\n')
		}
		text.WriteString(line[min(4, len(line)):])
		if len(line) == 3 || line[3] == ' ' {
			if code != want && !(want == 250 && code == 251) {
				return "", &replyError{code, text.String()}
			}
			return text.String(), nil
		}
	}
}

// send runs one MAIL, RCPT, DATA transaction and returns the acceptance
// latency: from writing DATA to reading the reply that follows the body.
func (c *client) send(from, to string, msg []byte) (time.Duration, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if err := c.cmd(250, "MAIL FROM:<"+from+">"); err != nil {
		return 0, err
	}
	if err := c.cmd(250, "RCPT TO:<"+to+">"); err != nil {
		return 0, err
	}
	t := time.Now()
	if err := c.cmd(354, "DATA"); err != nil {
		return 0, err
	}
	c.w.Write(dotStuff(msg))
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		c.w.WriteString("\r\n")
	}
	c.w.WriteString(".\r\n")
	if _, err := c.reply(250); err != nil {
		return 0, err
	}
	return time.Since(t), nil
}

// dotStuff doubles every dot that starts a line; benchmark bodies have none,
// so this is normally one fast scan.
func dotStuff(msg []byte) []byte {
	if len(msg) > 0 && msg[0] != '.' && !bytes.Contains(msg, []byte("\n.")) {
		return msg
	}
	out := make([]byte, 0, len(msg)+64)
	for i, b := range msg {
		if b == '.' && (i == 0 || msg[i-1] == '\n') {
			out = append(out, '.')
		}
		out = append(out, b)
	}
	return out
}

// reset aborts the current transaction.
func (c *client) reset() error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	return c.cmd(250, "RSET")
}

// quit ends the session and closes the connection.
func (c *client) quit() {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	c.cmd(221, "QUIT")
	c.conn.Close()
}
