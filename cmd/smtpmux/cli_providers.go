package main

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/smtpmux/smtpmux/internal/smtpproto"
)

// Table specs of providers, API keys and delivery groups. List columns
// are what fits a terminal line; detail views (get, create, …) add the
// rest that matters to an operator. --json has everything.
var (
	providerCols = []cliCol{
		col("ID", "id"), col("NAME", "name"), col("TYPE", "type"), col("STATUS", "status"),
		colFn("HOST", hostCell), col("GROUP", "group_id"), col("WEIGHT", "percentage"),
		col("HEALTH", "health.state"),
	}
	providerDetail = []cliCol{
		col("ID", "id"), col("NAME", "name"), col("TYPE", "type"), col("STATUS", "status"),
		col("REASON", "status_reason"), col("SHARED", "is_shared"), colFn("HOST", hostCell),
		col("PROTOCOL", "smtp_protocol"), col("USERNAME", "smtp_username"),
		col("PASSWORD SET", "has_smtp_password"), col("FROM", "from_email"), col("WEIGHT", "percentage"),
		col("GROUP", "group_id"), colFn("QUOTAS", quotaCell), col("HEALTH", "health.state"),
		col("CREATED", "created_at"), col("LAST TESTED", "last_tested_at"), col("LAST USED", "last_used_at"),
	}
	deletedCols = []cliCol{col("ID", "id"), col("DELETED", "deleted")}
	testCols    = []cliCol{
		col("SUCCESS", "success"), col("DEFERRED", "deferred"), col("MESSAGE", "message"),
		col("LATENCY MS", "latency_ms"), col("TESTED", "tested_at"),
	}
	usageCols = []cliCol{
		col("PROVIDER", "provider_id"), col("SENT TODAY", "sent_today"), col("SENT 7D", "sent_7d"),
		col("FAILED 7D", "failed_7d"), col("REJECTED 7D", "rejected_7d"), col("PENDING 7D", "pending_7d"),
		col("TOTAL 7D", "total_7d"),
	}
	keyCols = []cliCol{
		col("ID", "id"), col("NAME", "name"), col("TYPE", "type"), col("PREFIX", "prefix"),
		col("STATUS", "status"), colFn("ACCESS", scopeCell), col("CREATED", "created_at"),
		col("LAST USED", "last_used_at"),
	}
	keyDetail   = append(append([]cliCol{}, keyCols...), col("REVOKED", "revoked_at"))
	groupCols   = []cliCol{col("ID", "id"), col("NAME", "name"), col("PROVIDERS", "provider_ids"), col("DESCRIPTION", "description")}
	groupDel    = []cliCol{col("ID", "id"), col("DELETED", "deleted"), col("MOVED PROVIDERS", "moved_providers"), col("AFFECTED KEYS", "affected_api_keys"), col("AFFECTED MAILBOXES", "affected_mailboxes")}
	groupDetail = append(append([]cliCol{}, groupCols...), col("CREATED", "created_at"), col("UPDATED", "updated_at"))
)

var providerCmds = map[string]cliCmd{
	"list":       listCmd("/providers", providerCols, "status", "type"),
	"get":        idCmd("GET", "providers", "", providerDetail),
	"activate":   idCmd("POST", "providers", "activate", providerDetail),
	"deactivate": idCmd("POST", "providers", "deactivate", providerDetail),
	"delete":     idCmd("DELETE", "providers", "", deletedCols),
	"test":       {args: []string{"ID"}, setup: providerTest},
	"create": {flags: "--name N --host H --port P [--protocol starttls] [--username U] [--password-stdin] [--percentage N] [--group ID]",
		setup: providerCreate},
	"usage": getCmd("/providers/usage", func(c *cliClient, m map[string]any) {
		writeTable(c.stdout, cliObjects(m["providers"]), usageCols)
	}),
	"stats": getCmd("/providers/stats", showStats),
}

// providerCreate is "providers create": an SMTP provider. The password
// comes from stdin only (see readSecret).
func providerCreate(fs *flag.FlagSet) cliRun {
	name := fs.String("name", "", "provider name (required)")
	host := fs.String("host", "", "SMTP host (required)")
	port := fs.Int("port", 0, "SMTP port (required)")
	protocol := fs.String("protocol", smtpproto.Default, "none, plain, starttls, tls or ssl")
	username := fs.String("username", "", "SMTP username")
	pwStdin := fs.Bool("password-stdin", false, "read the SMTP password from standard input")
	pct := fs.Int("percentage", 0, "routing weight (default: the server's)")
	group := fs.String("group", "", "delivery group ID")
	return func(c *cliClient, _ []string) error {
		if err := required("name", *name, "host", *host); err != nil {
			return err
		}
		if *port <= 0 || *port > 65535 {
			return usageErr("--port is required (1-65535)")
		}
		body := map[string]any{"type": "smtp", "name": *name, "smtp_host": *host, "smtp_port": *port, "smtp_protocol": *protocol}
		if *username != "" {
			body["smtp_username"] = *username
		}
		if *pwStdin {
			pw, err := readSecret(c.stdin)
			if err != nil {
				return err
			}
			body["smtp_password"] = pw
		}
		if flagSet(fs, "percentage") {
			body["percentage"] = *pct
		}
		if *group != "" {
			body["group_id"] = *group
		}
		_, err := c.showOne("POST", "/providers", body, providerDetail)
		return err
	}
}

// providerTest is "providers test ID". A test that did not succeed exits
// 1 like an API error, so that "smtpmux providers test ID && …" means
// what it reads as; the result is printed either way.
func providerTest(*flag.FlagSet) cliRun {
	return func(c *cliClient, a []string) error {
		m, err := c.showOne("POST", cliPath("providers", a[0], "test"), nil, testCols)
		if err != nil {
			return err
		}
		if ok, _ := m["success"].(bool); !ok {
			return &cliExit{code: exitAPI, msg: "provider test failed: " + cliCell(m["message"])}
		}
		return nil
	}
}

// showStats prints GET /providers/stats as KIND/NAME/COUNT rows.
func showStats(c *cliClient, m map[string]any) {
	rows := []map[string]any{{"kind": "total", "name": "-", "count": m["total"]}}
	for _, kind := range []string{"by_status", "by_type"} {
		counts, _ := m[kind].(map[string]any)
		names := make([]string, 0, len(counts))
		for n := range counts {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			rows = append(rows, map[string]any{"kind": kind[3:], "name": n, "count": counts[n]})
		}
	}
	writeTable(c.stdout, rows, []cliCol{col("KIND", "kind"), col("NAME", "name"), col("COUNT", "count")})
}

// quotaCell lists a provider's set quota windows ("per_hour=100",
// "per_day=50-80" for a range); "-" is unlimited.
func quotaCell(m map[string]any) string {
	q, _ := m["quotas"].(map[string]any)
	var parts []string
	for _, w := range []string{"per_second", "per_minute", "per_hour", "per_day"} {
		r, ok := q[w].(map[string]any)
		if !ok {
			continue
		}
		lo, hi := cliCell(r["min"]), cliCell(r["max"])
		if lo == hi {
			parts = append(parts, w+"="+lo)
		} else {
			parts = append(parts, w+"="+lo+"-"+hi)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// cliObjects picks the objects out of a decoded JSON list.
func cliObjects(v any) []map[string]any {
	xs, _ := v.([]any)
	out := make([]map[string]any, 0, len(xs))
	for _, x := range xs {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

var keyCmds = map[string]cliCmd{
	"list":   listCmd("/api-keys", keyCols, "type"),
	"get":    idCmd("GET", "api-keys", "", keyDetail),
	"revoke": idCmd("DELETE", "api-keys", "", keyDetail),
	"create": {flags: "--name N [--type sending|root] [--scope all|providers:ID,ID|group:ID,ID]", setup: keyCreate},
}

// keyCreate is "keys create". The secret is in the answer only this
// once, so the detail view shows it and a note says to keep it.
func keyCreate(fs *flag.FlagSet) cliRun {
	name := fs.String("name", "", "key name (required)")
	typ := fs.String("type", "sending", "sending or root")
	scope := fs.String("scope", "", "sending keys: all, providers:ID,ID or group:ID,ID (default all)")
	return func(c *cliClient, _ []string) error {
		if err := required("name", *name); err != nil {
			return err
		}
		body := map[string]any{"name": *name, "type": *typ}
		if *scope != "" {
			sc, err := parseScope(*scope)
			if err != nil {
				return err
			}
			body["send_scope"] = sc
		}
		cols := append(append([]cliCol{}, keyCols...), col("KEY", "key"))
		if _, err := c.showOne("POST", "/api-keys", body, cols); err != nil {
			return err
		}
		fmt.Fprintln(c.stderr, "note: the key is shown only this once; store it now")
		return nil
	}
}

var groupCmds = map[string]cliCmd{
	"list":   listCmd("/delivery-groups", groupCols),
	"get":    idCmd("GET", "delivery-groups", "", groupDetail),
	"delete": idCmd("DELETE", "delivery-groups", "", groupDel),
	"create": {flags: "--name N [--description D]", setup: func(fs *flag.FlagSet) cliRun {
		name := fs.String("name", "", "group name (required)")
		desc := fs.String("description", "", "description")
		return func(c *cliClient, _ []string) error {
			if err := required("name", *name); err != nil {
				return err
			}
			body := map[string]any{"name": *name}
			if *desc != "" {
				body["description"] = *desc
			}
			_, err := c.showOne("POST", "/delivery-groups", body, groupDetail)
			return err
		}
	}},
}
