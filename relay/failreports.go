package relay

import (
	"errors"
	"time"

	"github.com/smtpmux/smtpmux/internal/ratelimit"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/relay/failreport"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// SourceFailureReport is the Source of a failure report smtpmux enqueued
// itself (the message log shows it as such). A report never gets a
// report of its own.
const SourceFailureReport = "failure_report"

// FailureReportsPerHour bounds the failure reports one team is sent per
// hour (on each node; the limiter is in memory). A report goes to the
// envelope sender, which the tenant chooses, so reports are mail the
// tenant can aim: bounded here on top of the team's normal quotas, so
// that a stream of failing sends cannot become a stream of backscatter.
// Past it, reports are counted (rate_limited) and skipped.
const FailureReportsPerHour = 100

// Outcomes of the failure report decision (smtpmux_failure_reports_total),
// counted once per message that finally failed for some recipient.
const (
	reportSent          = "sent"
	reportNotOptedIn    = "not_opted_in"
	reportNullSender    = "null_sender"
	reportOfReport      = "report"
	reportRateLimited   = "rate_limited"
	reportNoOwnProvider = "no_own_provider"
	reportError         = "error"
	reportDuplicate     = "duplicate"           // the original already has its report
	reportSuppressed    = "suppressed"          // the sender is on the team's suppression list
	reportInactive      = "credential_inactive" // the key was revoked, the mailbox suspended
)

// failureReporter sends failure reports for the Server's credentials; the
// Scheduler consults it when an attempt fails (finish.go).
type failureReporter struct {
	srv   *Server
	limit *ratelimit.Limiter
}

func newFailureReporter(srv *Server, perHour int) *failureReporter {
	return &failureReporter{srv: srv, limit: ratelimit.New(perHour, time.Hour, srv.now)}
}

// precheck is the part of the decision that needs the message as it was
// accepted: "" if a report is wanted should it finally fail, else the
// reason it is not. Its credential's opt-in is read now, not at
// acceptance: turning failure_reports off stops reports at once.
func (fr *failureReporter) precheck(m *store.Message) (scope *store.Scope, skip string) {
	switch {
	case m.Source == SourceFailureReport:
		return nil, reportOfReport
	case m.From == "":
		return nil, reportNullSender
	}
	st := fr.srv.store
	if m.MailboxID != "" {
		mb, err := st.Mailbox(m.MailboxID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, reportNotOptedIn
		case err != nil:
			return nil, reportError
		case mb.TeamID != m.TeamID || !mb.FailureReports:
			return nil, reportNotOptedIn
		case mb.Suspended:
			// Suspending stops the mailbox's mail; a report is more of it.
			return nil, reportInactive
		}
		return &mb.SendScope, ""
	}
	k, err := st.Key(m.CredentialID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, reportNotOptedIn
	case err != nil:
		return nil, reportError
	case k.TeamID != m.TeamID || !k.FailureReports:
		return nil, reportNotOptedIn
	case !k.Active():
		return nil, reportInactive
	}
	return &k.SendScope, ""
}

// failedRecipients are the recipients of a finished message that finally
// failed: refused or out of retries. Suppressed ones were never tried and
// never get a report.
func failedRecipients(m *store.Message) []failreport.Recipient {
	var out []failreport.Recipient
	for _, r := range m.Recipients {
		if r.Status == state.MessageRejected || r.Status == state.MessageFailed {
			reply := r.Reply
			if reply == "" {
				reply = m.Reason
			}
			out = append(out, failreport.Recipient{Address: r.Address, Reply: reply})
		}
	}
	return out
}

// ownScope narrows scope to the team's own providers in it: a report is
// the team's mail and never goes through the operator's managed account
// (whose limits the team's own sends are held to at acceptance, which a
// report does not pass). ok is false when no own provider is in scope.
func (fr *failureReporter) ownScope(teamID string, scope store.Scope) (store.Scope, bool) {
	ps, err := fr.srv.reg.TeamProviders(teamID)
	if err != nil {
		return store.Scope{}, false
	}
	rs := routingScope(scope)
	var ids []string
	for _, p := range ps {
		if !p.Managed && routing.InScope(rs, candidate(p)) {
			ids = append(ids, p.ID)
		}
	}
	return store.Scope{Type: "providers", ProviderPublicIDs: ids}, len(ids) > 0
}

// send decides and, if so, enqueues the report of final, a message that
// finished with failed recipients; headers is its header section, read
// before the body was dropped. It returns the outcome counted.
func (fr *failureReporter) send(final *store.Message, scope store.Scope, headers []byte) string {
	failed := failedRecipients(final)
	own, ok := fr.ownScope(final.TeamID, scope)
	if !ok {
		return reportNoOwnProvider
	}
	switch sup, err := fr.srv.store.Suppressed(final.TeamID, final.From); {
	case err != nil:
		return reportError
	case sup != nil:
		// The sender's own address bounced or complained before: the
		// team's list holds for its reports as for its mail.
		return reportSuppressed
	}
	allowed, _, giveBack := fr.limit.Reserve(final.TeamID)
	if !allowed {
		return reportRateLimited
	}
	srv := fr.srv
	now := srv.now().UTC()
	id := srv.newMessageID()
	body, err := failreport.Compose(&failreport.Report{
		Hostname: srv.cfg.Hostname, Sender: final.From, MessageID: id, OriginalID: final.ID,
		Arrival: final.CreatedAt, Date: now, Recipients: failed, Headers: headers,
	})
	if err != nil {
		giveBack()
		return reportError
	}
	rep := &store.Message{
		ID: id, TeamID: final.TeamID, CredentialID: final.CredentialID, MailboxID: final.MailboxID,
		Source: SourceFailureReport, Scope: own, From: "", Size: int64(len(body)),
		Recipients:      []store.Recipient{{Address: final.From, Status: state.MessagePending}},
		Subject:         "Undelivered Mail Returned to Sender",
		HeaderMessageID: "<" + id + "@" + srv.cfg.Hostname + ">",
		Status:          state.MessagePending, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
	}
	if err := srv.store.EnqueueFailureReport(final.ID, rep, body); err != nil {
		giveBack() // nothing was sent: it does not count
		if errors.Is(err, store.ErrConflict) {
			return reportDuplicate
		}
		srv.log.Error("enqueueing failure report failed", "msg_id", final.ID, "err", err)
		return reportError
	}
	srv.log.Info("failure report enqueued", "event", "failure_report", "msg_id", rep.ID, "original", final.ID,
		"team", final.TeamID, "rcpts", len(failed))
	srv.metrics.acceptedOne()
	srv.sched.Kick()
	return reportSent
}

// hasFailed reports whether a finished message has a recipient that
// finally failed.
func hasFailed(m *store.Message) bool {
	for _, r := range m.Recipients {
		if r.Status == state.MessageRejected || r.Status == state.MessageFailed {
			return true
		}
	}
	return false
}

// reportPlan is what finish learns about a failing attempt's message
// before its result is stored (which drops the body of a finished one).
type reportPlan struct {
	skip    string
	scope   store.Scope
	headers []byte
}

// planReport prepares the report decision for an attempt of m that did
// not fully succeed; nil when the Scheduler has no reporter.
func (s *Scheduler) planReport(m *store.Message) *reportPlan {
	fr := s.reports.Load()
	if fr == nil {
		return nil
	}
	scope, skip := fr.precheck(m)
	p := &reportPlan{skip: skip}
	if skip != "" {
		return p
	}
	p.scope = *scope
	b, err := s.store.OpenBody(m)
	if err != nil {
		p.skip = reportError
		return p
	}
	p.headers = failreport.HeaderSection(b.Bytes())
	b.Release()
	return p
}

// reportFinal runs the report decision for final, the stored result of the
// attempt planReport prepared, if it finished with failed recipients.
func (s *Scheduler) reportFinal(p *reportPlan, final *store.Message) {
	if p == nil || final.State != store.StateDone || !hasFailed(final) {
		return
	}
	outcome := p.skip
	if outcome == "" {
		outcome = s.reports.Load().send(final, p.scope, p.headers)
	}
	s.cfg.Metrics.failureReport(outcome)
}
