package dashboard

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// page is what every template gets: the layout's fields and the page's
// own Data.
type page struct {
	Title    string
	Nav      string // the active navigation entry
	CSRF     string
	Operator bool
	KeyName  string
	Flash    string
	FlashErr bool
	Message  string // the error page's text
	Next     string // sign-in: where to go afterwards
	Link     string // the error page's onward link
	Data     any
}

// pageNames are the templates in templates/, each rendered inside
// layout.html.
var pageNames = []string{"signin", "error", "accounts", "account", "account_new", "confirm_delete", "logs",
	"message", "overview", "groups", "group_delete", "operator", "nodes", "keys", "domains", "domain", "mailboxes", "mailbox", "webhooks", "webhook", "suppressions"}

var funcs = template.FuncMap{
	"when":     when,
	"pct":      pct,
	"deref":    deref,
	"derefi":   derefi,
	"join":     strings.Join,
	"add":      func(a, b int) int { return a + b },
	"typeName": typeName,
	"has":      func(m map[string]string, k string) bool { _, ok := m[k]; return ok },
	"dict2":    actionArgs,
	"fe":       func(e map[string]string, f string) fieldRef { return fieldRef{E: e, F: f} },
	"protocols": func() []option {
		return []option{{"starttls", "STARTTLS"}, {"tls", "TLS (implicit)"}, {"none", "None (cleartext)"}}
	},
	"trimPer":  func(s string) string { return strings.TrimPrefix(s, "per ") },
	"statuses": func() []string { return []string{"pending", "sent", "failed", "rejected", "suppressed"} },
	"rx": func(x *explanation, names, why map[string]string) routingArgs {
		return routingArgs{X: x, Names: names, Why: why}
	},
	"reason": func(why map[string]string, r string) string {
		if t, ok := why[r]; ok {
			return t
		}
		return r
	},
	"mul":        func(a, b int) int { return a * b },
	"levelText":  levelText,
	"levelClass": levelClass,
	"rate":       rate,
	"drawRows":   drawRows,
	"charts":     func(cs ...chart) []chart { return cs },
	"groupName": func(names map[string]string, id *string) string {
		if id == nil {
			return "none"
		}
		if n, ok := names[*id]; ok {
			return n
		}
		return *id
	},
	"name": func(names map[string]string, id any) string {
		var s string
		switch x := id.(type) {
		case string:
			s = x
		case *string:
			if x == nil {
				return "—"
			}
			s = *x
		}
		if n, ok := names[s]; ok {
			return n
		}
		return s
	},
}

// actions is the argument of the "actions" template: a provider's
// buttons, and where activate/deactivate come back to.
// The key's permissions hide the buttons it may not use (the API would
// refuse them anyway).
type actions struct {
	P                 provider
	CSRF, Back        string
	CanUpdate, CanDel bool
}

func actionArgs(p any, csrf, back string, canUpdate, canDel bool) actions {
	a := actions{CSRF: csrf, Back: back, CanUpdate: canUpdate, CanDel: canDel}
	switch x := p.(type) {
	case *provider:
		a.P = *x
	case provider:
		a.P = x
	}
	return a
}

func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		out[n] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/partials.html", "templates/"+n+".html"))
	}
	return out
}

// fieldRef is the "err" template's argument: a form's field errors and
// the field to show.
type fieldRef struct {
	E map[string]string
	F string
}

type option struct{ V, L string }

// routingArgs is the "routing" template's argument.
type routingArgs struct {
	X     *explanation
	Names map[string]string
	Why   map[string]string
}

// drawRow is one eligible provider of a routing draw, its bar scaled to
// 200 units for the largest weight.
type drawRow struct {
	ID     string
	Weight int
	W      int
	Picked bool
}

func drawRows(x *explanation) []drawRow {
	top := 1
	for _, e := range x.Eligible {
		top = max(top, e.Weight)
	}
	out := make([]drawRow, 0, len(x.Eligible))
	for _, e := range x.Eligible {
		out = append(out, drawRow{ID: e.ProviderID, Weight: e.Weight, W: max(2, e.Weight*200/top), Picked: e.ProviderID == x.Picked})
	}
	return out
}

// render writes a whole page. It renders into a buffer first, so that a
// template error becomes a clean 500 rather than half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, p page) {
	if s != nil {
		p.CSRF, p.Operator = s.csrf, s.operator
		if s.key != nil {
			p.KeyName = s.key.Name
		} else if s.operator {
			p.KeyName = "operator"
		}
		if p.Flash == "" {
			p.Flash, p.FlashErr = d.sessions.takeFlash(s)
		}
	}
	var buf bytes.Buffer
	if err := d.pages[name].Execute(&buf, p); err != nil {
		d.log.Error("dashboard template failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// redirect ends a successful form post (post/redirect/get) with a notice
// for the next page.
func (d *Dashboard) redirect(w http.ResponseWriter, r *http.Request, s *session, to, flash string, isErr bool) {
	if flash != "" {
		d.sessions.setFlash(s, flash, isErr)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// when renders an RFC 3339 time (string, *string or time.Time) the way the
// pages show times: UTC, to the second.
func when(v any) string {
	var t time.Time
	switch x := v.(type) {
	case string:
		t, _ = time.Parse(time.RFC3339Nano, x)
	case *string:
		if x == nil {
			return ""
		}
		t, _ = time.Parse(time.RFC3339Nano, *x)
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	}
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// pct is used/cap in percent, capped at 100, for <meter> and the bars.
func pct(used, cap int) int {
	if cap <= 0 {
		return 0
	}
	return min(100, used*100/cap)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefi(p *int) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}

// typeName is a provider type as the product names it.
func typeName(t string) string {
	switch t {
	case "amazon_ses":
		return "Managed Amazon SES"
	case "smtp":
		return "Custom SMTP"
	case "gmail_api":
		return "Gmail"
	case "outlook_api":
		return "Outlook / Microsoft 365"
	case "ses":
		return "Amazon SES (own keys)"
	case "http":
		return "HTTP API"
	}
	return t
}
