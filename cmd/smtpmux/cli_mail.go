package main

import (
	"flag"
	"fmt"
	"strings"
)

// Table specs of mailboxes, their passwords, the message log and limits.
var (
	mailboxCols = []cliCol{
		col("ID", "id"), col("ADDRESS", "address"), col("NAME", "display_name"), col("STATUS", "status"),
		colFn("SCOPE", scopeCell), col("CREATED", "created_at"),
	}
	passwordCols = []cliCol{
		col("ID", "id"), col("MAILBOX", "mailbox_id"), col("NAME", "name"), col("PREFIX", "prefix"),
		col("STATUS", "status"), col("CREATED", "created_at"), col("LAST USED", "last_used_at"),
	}
	logCols = []cliCol{
		col("ID", "id"), col("STATUS", "status"), col("CREATED", "created_at"), col("FROM", "from"),
		col("TO", "to"), col("SUBJECT", "subject"), col("PROVIDER", "provider_id"), col("ATTEMPTS", "attempts"),
	}
	emailDetail = []cliCol{
		col("ID", "id"), col("STATUS", "status"), col("REASON", "reason"), col("SOURCE", "source"),
		col("FROM", "from"), col("SENT FROM", "sent_from_email"), col("SUBJECT", "subject"), col("SIZE", "size"),
		col("CREATED", "created_at"), col("UPDATED", "updated_at"), col("NEXT ATTEMPT", "next_attempt_at"),
		colFn("WAITING", func(m map[string]any) string { return routeCell(m["waiting"]) }),
	}
	recipientCols = []cliCol{
		col("EMAIL", "email"), col("STATUS", "status"), col("CODE", "code"), col("PROVIDER", "provider_id"),
		col("REPLY", "reply"),
	}
	attemptCols = []cliCol{
		col("#", "number"), col("PROVIDER", "provider_id"), col("TYPE", "provider_type"), col("STATUS", "status"),
		col("CLASS", "class"), col("CODE", "code"), col("MS", "duration_ms"), col("STARTED", "started_at"),
		col("REPLY", "reply"), colFn("ROUTING", func(m map[string]any) string { return routeCell(m["routing"]) }),
	}
	limitCols = []cliCol{
		col("LIMIT", "name"), col("USAGE", "usage"), col("RESERVED", "reserved"), col("MAX", "max_allowed"), col("RATIO", "usage_ratio"),
		col("AT LIMIT", "is_at_limit"), col("NEAR LIMIT", "is_near_limit"), col("RESETS", "resets_at"),
	}
)

var mailboxCmds = map[string]cliCmd{
	"list":    listCmd("/mailboxes", mailboxCols),
	"get":     idCmd("GET", "mailboxes", "", mailboxCols),
	"suspend": idCmd("POST", "mailboxes", "suspend", mailboxCols),
	"resume":  idCmd("POST", "mailboxes", "resume", mailboxCols),
	"delete":  idCmd("DELETE", "mailboxes", "", deletedCols),
	"create":  {flags: "--address A [--name N] [--scope all|providers:ID,ID|group:ID,ID]", setup: mailboxCreate},
	"passwords list": {args: []string{"MBX"}, flags: "[--limit N]", setup: func(fs *flag.FlagSet) cliRun {
		limit := limitFlag(fs)
		return func(c *cliClient, a []string) error {
			if err := checkLimit(*limit); err != nil {
				return err
			}
			return c.showList(cliPath("mailboxes", a[0], "passwords"), nil, *limit, passwordCols)
		}
	}},
	"passwords create": {args: []string{"MBX"}, flags: "--name N", setup: passwordCreate},
	"passwords revoke": {args: []string{"MBX", "PWID"}, setup: func(*flag.FlagSet) cliRun {
		return func(c *cliClient, a []string) error {
			_, err := c.showOne("DELETE", cliPath("mailboxes", a[0], "passwords", a[1]), nil, passwordCols)
			return err
		}
	}},
}

func mailboxCreate(fs *flag.FlagSet) cliRun {
	address := fs.String("address", "", "the mailbox's email address (required)")
	name := fs.String("name", "", "display name")
	scope := fs.String("scope", "", "all, providers:ID,ID or group:ID,ID (default all)")
	return func(c *cliClient, _ []string) error {
		if err := required("address", *address); err != nil {
			return err
		}
		body := map[string]any{"address": *address}
		if *name != "" {
			body["display_name"] = *name
		}
		if *scope != "" {
			sc, err := parseScope(*scope)
			if err != nil {
				return err
			}
			body["send_scope"] = sc
		}
		_, err := c.showOne("POST", "/mailboxes", body, mailboxCols)
		return err
	}
}

// passwordCreate is "mailboxes passwords create MBX --name N"; like a
// key, the password is in the answer only this once.
func passwordCreate(fs *flag.FlagSet) cliRun {
	name := fs.String("name", "", "password name (required)")
	return func(c *cliClient, a []string) error {
		if err := required("name", *name); err != nil {
			return err
		}
		cols := append(append([]cliCol{}, passwordCols...), col("PASSWORD", "password"))
		if _, err := c.showOne("POST", cliPath("mailboxes", a[0], "passwords"), map[string]any{"name": *name}, cols); err != nil {
			return err
		}
		fmt.Fprintln(c.stderr, "note: the password is shown only this once; store it now")
		return nil
	}
}

var emailCmds = map[string]cliCmd{
	"logs": listCmd("/emails/logs", logCols, "status", "search"),
	"get": {args: []string{"ID"}, setup: func(*flag.FlagSet) cliRun {
		return func(c *cliClient, a []string) error {
			env, err := c.do("GET", cliPath("emails", a[0]), nil, nil)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(env.Data)
			}
			m, err := cliDecode(env.Data)
			if err != nil {
				return err
			}
			writeDetail(c.stdout, m, emailDetail)
			fmt.Fprintln(c.stdout, "\nRECIPIENTS")
			writeTable(c.stdout, cliObjects(m["recipients"]), recipientCols)
			fmt.Fprintln(c.stdout, "\nATTEMPTS")
			writeTable(c.stdout, cliObjects(m["attempts"]), attemptCols)
			return nil
		}
	}},
}

var limitCmds = map[string]cliCmd{
	"": getCmd("/providers/limits", func(c *cliClient, m map[string]any) {
		var rows []map[string]any
		for _, name := range []string{"sending_accounts", "shared_amazon_ses"} {
			if r, ok := m[name].(map[string]any); ok {
				r["name"] = name
				rows = append(rows, r)
			}
		}
		// The managed account's hourly limit, counted the same way
		// (usage = sent + reserved), on a row of its own.
		if r, ok := m["shared_amazon_ses"].(map[string]any); ok {
			if h, ok := r["hourly"].(map[string]any); ok {
				rows = append(rows, map[string]any{"name": "shared_amazon_ses hourly", "usage": h["usage"],
					"reserved": h["reserved"], "max_allowed": h["limit"], "is_at_limit": h["is_at_limit"], "resets_at": h["resets_at"]})
			}
		}
		writeTable(c.stdout, rows, limitCols)
	}),
}

// routeCell summarises a routing explanation (an attempt's pick, or why
// a message waits): the scope, what was picked by which draw, what was
// excluded and why. The full explanation is in --json.
func routeCell(v any) string {
	r, ok := v.(map[string]any)
	if !ok {
		return "-"
	}
	parts := []string{"scope " + cliCell(r["scope_type"])}
	if p := cliCell(r["picked"]); p != "-" {
		parts = append(parts, fmt.Sprintf("picked %s (draw %s of %s, %d eligible)",
			p, cliCell(r["draw"]), cliCell(r["total_weight"]), len(cliObjects(r["eligible"]))))
	}
	for _, ex := range cliObjects(r["excluded"]) {
		parts = append(parts, "excluded "+cliCell(ex["provider_id"])+": "+cliCell(ex["reason"]))
	}
	if w, _ := r["waiting"].(bool); w {
		parts = append(parts, "waiting until "+cliCell(r["retry_at"]))
	}
	return strings.Join(parts, "; ")
}
