package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
)

// cliCol is one column of a table (or one line of a detail view): a
// heading and how to get the cell out of a decoded item.
type cliCol struct {
	head string
	get  func(m map[string]any) string
}

// col is a column showing the member at a dotted path ("health.state").
func col(head, path string) cliCol {
	return cliCol{head: head, get: func(m map[string]any) string { return cliCell(cliLookupPath(m, path)) }}
}

// colFn is a computed column.
func colFn(head string, get func(m map[string]any) string) cliCol {
	return cliCol{head: head, get: get}
}

// cliLookupPath walks a dotted path through nested objects; a missing
// member is nil, rendered like JSON null.
func cliLookupPath(m map[string]any, path string) any {
	var v any = m
	for p := range strings.SplitSeq(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[p]
	}
	return v
}

// cliCell renders one JSON value for a table cell: null is "-", lists
// are comma-joined, objects are compact JSON.
func cliCell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return cliClean(x)
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case json.Number:
		return x.String()
	case []any:
		if len(x) == 0 {
			return "-"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cliCell(e)
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(x)
		return cliClean(string(b))
	}
}

// cliClean replaces control characters with spaces. Cells hold text
// that other people chose (subjects, upstream replies, names); an escape
// sequence in one must not drive the operator's terminal, and a tab or
// newline would break the table's columns.
func cliClean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// cliDecode decodes one item, keeping numbers exact (json.Number) so
// that IDs-like integers and counts print as the server sent them.
func cliDecode(raw json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, &cliExit{code: exitNetwork, msg: "the answer's data is not a JSON object"}
	}
	return m, nil
}

// table prints items as a table with one column per spec.
func (c *cliClient) table(items []json.RawMessage, cols []cliCol) error {
	rows := make([]map[string]any, 0, len(items))
	for _, raw := range items {
		m, err := cliDecode(raw)
		if err != nil {
			return err
		}
		rows = append(rows, m)
	}
	writeTable(c.stdout, rows, cols)
	return nil
}

// writeTable renders decoded rows; also used for nested lists such as an
// email's recipients.
func writeTable(w io.Writer, rows []map[string]any, cols []cliCol) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, cl := range cols {
		if i > 0 {
			io.WriteString(tw, "\t")
		}
		io.WriteString(tw, cl.head)
	}
	io.WriteString(tw, "\n")
	for _, m := range rows {
		for i, cl := range cols {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, cl.get(m))
		}
		io.WriteString(tw, "\n")
	}
	tw.Flush()
}

// writeDetail renders one item vertically, "HEADING  value" per line.
func writeDetail(w io.Writer, m map[string]any, cols []cliCol) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cl := range cols {
		fmt.Fprintf(tw, "%s\t%s\n", cl.head, cl.get(m))
	}
	tw.Flush()
}

// printJSON writes raw JSON indented, as the server sent it otherwise
// (member order and number spelling preserved).
func (c *cliClient) printJSON(raw json.RawMessage) error {
	var buf bytes.Buffer
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return &cliExit{code: exitNetwork, msg: "the answer's data is not valid JSON"}
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(buf.Bytes())
	return err
}

// printJSONList writes the items of all pages as one JSON array.
func (c *cliClient) printJSONList(items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	raw, err := json.Marshal(items)
	if err != nil {
		return err
	}
	return c.printJSON(raw)
}

// showList fetches a list and prints it as a table or, with --json, as
// one array.
func (c *cliClient) showList(path string, query url.Values, limit int, cols []cliCol) error {
	items, err := c.list(path, query, limit)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSONList(items)
	}
	return c.table(items, cols)
}

// showOne sends one request and prints its data as a detail view or,
// with --json, as JSON. It returns the decoded data for commands that
// look at the outcome (a provider test's success).
func (c *cliClient) showOne(method, path string, body any, cols []cliCol) (map[string]any, error) {
	env, err := c.do(method, path, nil, body)
	if err != nil {
		return nil, err
	}
	m, err := cliDecode(env.Data)
	if err != nil {
		return nil, err
	}
	if c.json {
		return m, c.printJSON(env.Data)
	}
	writeDetail(c.stdout, m, cols)
	return m, nil
}
