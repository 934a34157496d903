package bounce

import (
	"regexp"
	"strings"
)

// Plain-text bounces. Many servers still send failure notices without a
// message/delivery-status part: qmail ("Hi. This is the qmail-send
// program … <addr>: … (#5.1.1)"), Exim before it added DSNs ("This
// message was created automatically by mail delivery software … failed:
// addr … SMTP error from remote mail server after RCPT TO:<addr>: 550
// 5.1.1 …"), and gateways of every kind. These are read conservatively:
// a recipient's failure needs an address the report names as failed and
// a 5xx or 4xx code next to it; a notice that speaks of a delay, or that
// has no code, is not a failure.

var (
	// qmailRcptRe: "<user@example.com>:" at the start of a line.
	qmailRcptRe = regexp.MustCompile(`(?m)^<([^<>\s]+@[^<>\s]+)>:\s*$`)
	// eximFailedRe: the address line under "failed:" (two-space indent).
	eximFailedRe = regexp.MustCompile(`(?m)^\s{1,8}([^\s<>@]+@[^\s<>@]+)\s*$`)
	qmailCodeRe  = regexp.MustCompile(`\(#([245]\.\d{1,3}\.\d{1,3})\)`)
	delayWords   = []string{"delivery has been delayed", "delivery is delayed", "will keep trying", "will retry",
		"still trying", "not yet been delivered", "delivery delayed", "warning: message"}
)

// textBounce reads a plain-text bounce: the failed recipients it names,
// with their status, or nil when the text is not clearly a failure.
func textBounce(text string) []Recipient {
	lower := strings.ToLower(text)
	for _, w := range delayWords {
		if strings.Contains(lower, w) {
			return nil
		}
	}
	if strings.Contains(lower, "qmail-send program") {
		return qmailBounce(text)
	}
	var out []Recipient
	if i := strings.Index(lower, "failed:"); i >= 0 {
		// Exim: the addresses follow "failed:", each with its reason
		// on the lines below it.
		rest := text[i+len("failed:"):]
		locs := eximFailedRe.FindAllStringSubmatchIndex(rest, maxRcpts)
		for n, loc := range locs {
			end := len(rest)
			if n+1 < len(locs) {
				end = locs[n+1][0]
			}
			block := rest[loc[1]:end]
			if r, ok := withCode(rest[loc[2]:loc[3]], block); ok {
				out = append(out, r)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	// Anything else: one code for the whole message, recipient unknown
	// (the token names it, or the message has one).
	if r, ok := withCode("", text); ok {
		return []Recipient{r}
	}
	return nil
}

func qmailBounce(text string) []Recipient {
	var out []Recipient
	locs := qmailRcptRe.FindAllStringSubmatchIndex(text, maxRcpts)
	for n, loc := range locs {
		end := len(text)
		if n+1 < len(locs) {
			end = locs[n+1][0]
		}
		block := text[loc[1]:end]
		if cut := strings.Index(block, "--- Below this line"); cut >= 0 {
			block = block[:cut]
		}
		r := Recipient{Address: bareAddress(text[loc[2]:loc[3]]), Action: "failed", Diagnostic: collapse(block)}
		if m := qmailCodeRe.FindStringSubmatch(block); m != nil {
			r.Status = m[1]
		} else {
			r.Status = firstEnhanced(block)
		}
		if r.Status != "" && r.Address != "" {
			out = append(out, r)
		}
	}
	return out
}

// withCode makes a failed recipient of addr if block holds a reply or
// enhanced code; the diagnostic is the line that has it.
func withCode(addr, block string) (Recipient, bool) {
	status := firstEnhanced(block)
	if status == "" || status[0] == '2' {
		return Recipient{}, false
	}
	diag := ""
	for _, line := range strings.Split(block, "\n") {
		if enhancedRe.MatchString(line) || replyRe.MatchString(line) {
			diag = collapse(line)
			break
		}
	}
	if len(diag) > 500 {
		diag = diag[:500]
	}
	return Recipient{Address: bareAddress(addr), Action: "failed", Status: status, Diagnostic: diag}, true
}
