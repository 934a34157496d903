package shape

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"golang.org/x/net/html"
)

// crlf turns a readable test literal with \n line ends into wire form.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// part is a leaf entity as go-message decodes it (transfer encoding undone,
// charset left alone so bytes compare exactly).
type part struct {
	mediaType string
	charset   string
	body      []byte
}

// mimeLeaves parses msg with go-message, independently of our own walker,
// and returns its leaves in order.
func mimeLeaves(msg []byte) ([]part, error) {
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil && !message.IsUnknownCharset(err) {
		return nil, err
	}
	var out []part
	err = collectLeaves(e, &out, 0)
	return out, err
}

func collectLeaves(e *message.Entity, out *[]part, depth int) error {
	if depth > maxDepth {
		return errors.New("too deep")
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil && !message.IsUnknownCharset(err) {
				return err
			}
			if err := collectLeaves(p, out, depth+1); err != nil {
				return err
			}
		}
	}
	mt, params, _ := e.Header.ContentType()
	b, err := io.ReadAll(e.Body)
	if err != nil {
		return err
	}
	*out = append(*out, part{mediaType: mt, charset: params["charset"], body: b})
	return nil
}

// htmlPart returns the decoded body of the first text/html leaf.
func htmlPart(t *testing.T, msg []byte) string {
	t.Helper()
	ps, err := mimeLeaves(msg)
	if err != nil {
		t.Fatalf("output does not parse as MIME: %v", err)
	}
	for _, p := range ps {
		if p.mediaType == "text/html" {
			return string(p.body)
		}
	}
	t.Fatal("no text/html part")
	return ""
}

// sameHTMLButHrefs checks that b tokenizes exactly like a except for href
// values of <a>/<area> that were replaced by tracking URLs: the rewrite must
// not reformat anything else.
func sameHTMLButHrefs(a, b []byte, trackPrefix string) error {
	za, zb := html.NewTokenizer(bytes.NewReader(a)), html.NewTokenizer(bytes.NewReader(b))
	for i := 0; ; i++ {
		ta, tb := za.Next(), zb.Next()
		if ta != tb {
			return fmt.Errorf("token %d: type %v became %v", i, ta, tb)
		}
		if ta == html.ErrorToken {
			return nil
		}
		xa, xb := za.Token(), zb.Token()
		if xa.Data != xb.Data || len(xa.Attr) != len(xb.Attr) {
			return fmt.Errorf("token %d: %q became %q", i, xa.String(), xb.String())
		}
		for j := range xa.Attr {
			aa, ab := xa.Attr[j], xb.Attr[j]
			if aa == ab {
				continue
			}
			if aa.Key == "href" && ab.Key == "href" && (xa.Data == "a" || xa.Data == "area") && strings.HasPrefix(ab.Val, trackPrefix) {
				continue
			}
			return fmt.Errorf("token %d: attribute %q=%q became %q=%q", i, aa.Key, aa.Val, ab.Key, ab.Val)
		}
	}
}

// counter returns a token function that numbers links and records their
// URLs, like the relay's MAC-over-index tokens will.
func counter() (func(string) string, *[]string) {
	var urls []string
	return func(u string) string {
		urls = append(urls, u)
		return fmt.Sprintf("tok%d", len(urls)-1)
	}, &urls
}
