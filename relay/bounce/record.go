package bounce

import (
	"errors"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/verp"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// Recorder writes what reports say onto the messages their tokens name.
type Recorder struct {
	st      *store.Store
	signer  *verp.Signer
	events  relay.EventSink
	metrics *relay.Metrics
	now     func() time.Time
	// OnFeedback, when set, is called after a report added feedback
	// about mail providerID sent (the scheduler's managed-account hold
	// check).
	OnFeedback func(teamID, providerID string)
}

// NewRecorder returns a Recorder. events and metrics may be nil; now nil
// means time.Now.
func NewRecorder(st *store.Store, signer *verp.Signer, events relay.EventSink, metrics *relay.Metrics, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{st: st, signer: signer, events: events, metrics: metrics, now: now}
}

// added is one feedback entry a report added to a recipient.
type added struct {
	rcpt string
	fb   store.Feedback
}

// Record applies rep to message msgID, whose token named recipient index
// rcpt (verp.AllRecipients: any of the message's, for an SES notification,
// which its signature vouches for; the listener refuses such tokens). Only the message the
// token names is touched, and only its own recipients: a report that
// names another message or an address the message was not sent to
// changes nothing. A delayed-delivery notice, a success notice, and a
// failure that is not the address's (a policy block) record nothing. A
// message that is gone (retention) is not an error.
func (r *Recorder) Record(msgID string, rcpt int, rep *Report) error {
	now := r.now().UTC()
	bounceSrc, complaintSrc, kind := "dsn", "arf", rep.Kind
	if rep.Source != "" {
		bounceSrc, complaintSrc, kind = rep.Source, rep.Source, rep.Source
	}
	var adds []added
	var teamID, provID string
	_, err := r.st.UpdateMessage(msgID, func(m *store.Message) error {
		adds, teamID, provID = adds[:0], m.TeamID, lastProvider(m)
		switch rep.Kind {
		case KindARF:
			addrs := rep.ComplaintRcpts
			if len(addrs) == 0 {
				addrs = []string{""}
			}
			for _, a := range addrs {
				if i := resolve(m, rcpt, a); i >= 0 {
					adds = addFeedback(m, i, store.Feedback{Kind: store.FeedbackComplaint, Type: rep.FeedbackType,
						Source: complaintSrc, ProviderID: provID, At: now}, adds)
				}
			}
		default:
			for _, rr := range rep.Recipients {
				if !rr.Failed() {
					continue
				}
				bk := routing.BounceOfStatus(rr.Status)
				if bk == routing.BounceNone {
					continue
				}
				if i := resolve(m, rcpt, rr.Address); i >= 0 {
					adds = addFeedback(m, i, store.Feedback{Kind: store.FeedbackBounce, Type: string(bk), Source: bounceSrc,
						Status: rr.Status, Diagnostic: clip(rr.Diagnostic, 1000), ProviderID: provID, At: now}, adds)
				}
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		r.metrics.Report(kind, "ignored")
		return nil
	}
	if err != nil {
		return err
	}
	outcome := "recorded"
	if len(adds) == 0 {
		outcome = "ignored"
	}
	r.metrics.Report(kind, outcome)
	if len(adds) > 0 && provID != "" && r.OnFeedback != nil {
		r.OnFeedback(teamID, provID)
	}
	for _, a := range adds {
		typ := a.fb.Type
		if a.fb.Kind == store.FeedbackComplaint {
			typ = "complaint"
		}
		r.metrics.Feedback(provID, typ, a.fb.Source)
		if r.events == nil {
			continue
		}
		e := event.Event{TeamID: teamID, MessageID: msgID, ProviderID: provID, Recipients: []string{a.rcpt}, At: now}
		if a.fb.Kind == store.FeedbackComplaint {
			e.Type, e.Extra = event.Complained, map[string]any{"feedback_type": a.fb.Type, "source": a.fb.Source}
		} else {
			e.Type, e.Reply = event.Bounced, a.fb.Diagnostic
			e.Extra = map[string]any{"bounce_type": a.fb.Type, "source": a.fb.Source, "diagnostic_code": a.fb.Diagnostic,
				"status": a.fb.Status}
		}
		r.events(e)
	}
	return nil
}

// resolve finds the recipient a report line is about: the token's own
// recipient (and then the report may not name another), or, for a token
// of several recipients, the one the report names; a report that names
// no address counts only for a one-recipient message. -1: none.
func resolve(m *store.Message, bound int, addr string) int {
	if bound >= 0 {
		if bound >= len(m.Recipients) || addr != "" && !strings.EqualFold(addr, m.Recipients[bound].Address) {
			return -1
		}
		return bound
	}
	if addr == "" {
		if len(m.Recipients) == 1 {
			return 0
		}
		return -1
	}
	for i, r := range m.Recipients {
		if strings.EqualFold(addr, r.Address) {
			return i
		}
	}
	return -1
}

// maxReportsPerRecipient caps the entries reports (DSN and ARF, not the
// relay's own SMTP replies) add to one recipient. A token is seen by
// everyone the message reaches, and a report's Feedback-Type or status
// is the sender's to choose: without a cap, one recipient could grow the
// team's message record and fire its webhooks without end. Rates and
// suppression need only the first bounce and the first complaint.
const maxReportsPerRecipient = 8

// addFeedback appends f to recipient i unless the same report was
// recorded already (a report delivered twice counts once) or the
// recipient already has maxReportsPerRecipient entries from reports.
func addFeedback(m *store.Message, i int, f store.Feedback, adds []added) []added {
	r := &m.Recipients[i]
	reports := 0
	for _, g := range r.Feedback {
		if g.Kind == f.Kind && g.Type == f.Type && g.Source == f.Source && g.Status == f.Status {
			return adds
		}
		if g.Source == "dsn" || g.Source == "arf" {
			reports++
		}
	}
	if reports >= maxReportsPerRecipient {
		return adds
	}
	r.Feedback = append(r.Feedback, f)
	return append(adds, added{rcpt: r.Address, fb: f})
}

// lastProvider is the provider of the message's last attempt that sent
// it: the account whose reputation the report is about.
func lastProvider(m *store.Message) string {
	for i := len(m.Attempts) - 1; i >= 0; i-- {
		if m.Attempts[i].ProviderID != "" {
			return m.Attempts[i].ProviderID
		}
	}
	return ""
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
