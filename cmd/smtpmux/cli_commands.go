package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// cliRun is what a command's setup returns: the code run after parsing.
type cliRun = func(c *cliClient, args []string) error

// listCmd is "RESOURCE list [--FILTER V…] [--limit N]": each filter flag
// is passed on as the query parameter of the same name.
func listCmd(path string, cols []cliCol, filters ...string) cliCmd {
	syn := ""
	for _, f := range filters {
		syn += fmt.Sprintf("[--%s V] ", f)
	}
	return cliCmd{flags: syn + "[--limit N]", setup: func(fs *flag.FlagSet) cliRun {
		vals := make([]*string, len(filters))
		for i, f := range filters {
			vals[i] = fs.String(f, "", "only items whose "+f+" is this")
		}
		limit := limitFlag(fs)
		return func(c *cliClient, _ []string) error {
			if err := checkLimit(*limit); err != nil {
				return err
			}
			q := url.Values{}
			for i, f := range filters {
				if *vals[i] != "" {
					q.Set(f, *vals[i])
				}
			}
			return c.showList(path, q, *limit, cols)
		}
	}}
}

// idCmd is "RESOURCE ACTION ID": one request to base/ID[/suffix] whose
// answer is shown with cols.
func idCmd(method, base, suffix string, cols []cliCol) cliCmd {
	return cliCmd{args: []string{"ID"}, setup: func(*flag.FlagSet) cliRun {
		return func(c *cliClient, a []string) error {
			p := cliPath(base, a[0])
			if suffix != "" {
				p += "/" + suffix
			}
			_, err := c.showOne(method, p, nil, cols)
			return err
		}
	}}
}

// getCmd is a GET without arguments (usage, stats, limits).
func getCmd(path string, show func(c *cliClient, m map[string]any)) cliCmd {
	return cliCmd{setup: func(*flag.FlagSet) cliRun {
		return func(c *cliClient, _ []string) error {
			env, err := c.do("GET", path, nil, nil)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(env.Data)
			}
			m, err := cliDecode(env.Data)
			if err == nil {
				show(c, m)
			}
			return err
		}
	}}
}

// limitFlag declares --limit on a list command.
func limitFlag(fs *flag.FlagSet) *int {
	return fs.Int("limit", 0, fmt.Sprintf("most items to fetch (default all, at most %d)", cliMaxItems))
}

func checkLimit(n int) error {
	if n < 0 || n > cliMaxItems {
		return usageErr("--limit must be between 1 and %d", cliMaxItems)
	}
	return nil
}

// flagSet reports whether a flag was given, so that optional members are
// sent only when asked for (absent and zero mean different things to the
// API: an absent percentage is the default weight).
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// required returns a usage error naming the first empty flag.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return usageErr("--%s is required", pairs[i])
		}
	}
	return nil
}

// readSecret reads a secret from stdin (--password-stdin): secrets in
// flag values end up in shell history and in ps output. One trailing
// newline, as echo and most editors add, is not part of it.
func readSecret(r io.Reader) (string, error) {
	if r == nil {
		return "", usageErr("--password-stdin: no standard input")
	}
	b, err := io.ReadAll(io.LimitReader(r, 4097))
	if err != nil {
		return "", usageErr("--password-stdin: %v", err)
	}
	if len(b) > 4096 {
		return "", usageErr("--password-stdin: more than 4096 bytes")
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", usageErr("--password-stdin: standard input is empty")
	}
	return s, nil
}

// parseScope turns --scope all|providers:ID,ID|group:ID,ID into a
// send_scope object.
func parseScope(s string) (map[string]any, error) {
	kind, ids, _ := strings.Cut(s, ":")
	var list []string
	for id := range strings.SplitSeq(ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			list = append(list, id)
		}
	}
	switch {
	case kind == "all" && len(list) == 0:
		return map[string]any{"type": "all"}, nil
	case kind == "providers" && len(list) > 0:
		return map[string]any{"type": "providers", "provider_public_ids": list}, nil
	case kind == "group" && len(list) > 0:
		return map[string]any{"type": "group", "group_public_ids": list}, nil
	}
	return nil, usageErr("--scope must be all, providers:ID[,ID…] or group:ID[,ID…]")
}

// scopeCell summarises a key's or mailbox's access: a root key's
// permissions or a send scope.
func scopeCell(m map[string]any) string {
	if p, ok := m["permissions"].([]any); ok && len(p) > 0 {
		return "perms:" + cliCell(p)
	}
	sc, _ := m["send_scope"].(map[string]any)
	switch t := cliCell(sc["type"]); t {
	case "providers":
		return "providers:" + cliCell(sc["provider_public_ids"])
	case "group":
		return "group:" + cliCell(sc["group_public_ids"])
	default:
		return t
	}
}

// hostCell is "host:port" of an SMTP provider, "-" for other kinds.
func hostCell(m map[string]any) string {
	h := cliCell(m["smtp_host"])
	if h == "-" {
		return h
	}
	return h + ":" + cliCell(m["smtp_port"])
}
