package bounce

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/verp"
	"github.com/smtpmux/smtpmux/store"
)

// Limits of the SES hook. SNS caps a message at 256 KB; its envelope and
// JSON escaping add some.
const (
	maxSNSBody   = 320 << 10
	snsMaxAge    = time.Hour       // older Timestamps are refused as stale
	snsMaxSkew   = 5 * time.Minute // a Timestamp this far ahead is refused too
	replayWindow = snsMaxAge + snsMaxSkew
)

// SESHookConfig configures the SES notification endpoint.
type SESHookConfig struct {
	// ManagedTopicARN is the SNS topic the managed account's SES
	// publishes to ([managed.ses] sns_topic_arn); "" refuses every
	// notification posted for a managed provider.
	ManagedTopicARN string
	// MaxRememberedIDs bounds the replay cache per provider (0: 20,000).
	MaxRememberedIDs int
}

// SESHook is the public endpoint POST /hooks/ses/{id} that Amazon SNS
// posts SES Bounce, Complaint and Delivery notifications to. It trusts a
// post only when its SNS signature verifies against a certificate from
// SNS's own host, its topic is the one configured for that provider
// (own SES: the provider's ses_sns_topic_arn; managed account:
// [managed.ses] sns_topic_arn), its Timestamp is under an hour old and its
// MessageId was not seen in that hour. Bounces and complaints then go
// through the Recorder, the same path as the bounce listener's reports.
type SESHook struct {
	cfg      SESHookConfig
	st       *store.Store
	rec      *Recorder
	verifier *SNSVerifier
	log      *slog.Logger
	now      func() time.Time
	replays  replayCache
}

// NewSESHook returns the hook. verifier nil uses NewSNSVerifier; now nil
// means time.Now.
func NewSESHook(cfg SESHookConfig, st *store.Store, rec *Recorder, verifier *SNSVerifier, log *slog.Logger, now func() time.Time) *SESHook {
	if verifier == nil {
		verifier = NewSNSVerifier()
	}
	if now == nil {
		now = time.Now
	}
	if cfg.MaxRememberedIDs <= 0 {
		cfg.MaxRememberedIDs = 20_000
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SESHook{cfg: cfg, st: st, rec: rec, verifier: verifier, log: log, now: now,
		replays: replayCache{max: cfg.MaxRememberedIDs}}
}

// hookReply is the JSON body of every answer; SNS looks only at the
// status (2xx–4xx end its retries, 5xx makes it retry).
type hookReply struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

func reply(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(hookReply{Status: status, Message: msg})
}

// refuse answers every failed check alike (403), so that the endpoint
// tells an outsider neither which provider ids exist nor which check
// failed; the log says which.
func (h *SESHook) refuse(w http.ResponseWriter, providerID, why string, err error) {
	h.log.Warn("ses hook: notification refused", "event", "sns_refused", "provider", providerID, "reason", why, "err", err)
	reply(w, http.StatusForbidden, "refused", "notification refused")
}

// wireSNS is the posted JSON; Subject is a pointer because only a
// present Subject is part of the signed string.
type wireSNS struct {
	SNSMessage
	Subject *string `json:"Subject"`
}

// ServeHTTP handles one post; the provider id is the {id} path value.
func (h *SESHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	providerID := r.PathValue("id")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, http.StatusMethodNotAllowed, "error", "POST only")
		return
	}
	body, err := readLimited(w, r, maxSNSBody)
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, "error", "body too large")
		return
	}
	var in wireSNS
	if err := json.Unmarshal(body, &in); err != nil || in.MessageID == "" || in.TopicArn == "" {
		reply(w, http.StatusBadRequest, "error", "not an SNS message")
		return
	}
	m := in.SNSMessage
	if in.Subject != nil {
		m.Subject, m.subjectSet = *in.Subject, true
	}
	p, err := h.provider(providerID)
	if err != nil || (p.Type != store.TypeSES && p.Type != store.TypeManagedSES) {
		h.refuse(w, providerID, "no such SES provider", err)
		return
	}
	topic := p.SNSTopicARN
	if p.Type == store.TypeManagedSES {
		topic = h.cfg.ManagedTopicARN
	}
	if topic == "" || m.TopicArn != topic {
		h.refuse(w, providerID, "topic not configured for this provider", nil)
		return
	}
	now := h.now()
	at, err := time.Parse(time.RFC3339Nano, m.Timestamp)
	if err != nil || now.Sub(at) > snsMaxAge || at.Sub(now) > snsMaxSkew {
		h.refuse(w, providerID, "stale or missing Timestamp", err)
		return
	}
	if err := h.verifier.Verify(r.Context(), &m); err != nil {
		h.refuse(w, providerID, "signature", err)
		return
	}
	// Claimed only after the signature verified, so forged posts cannot
	// fill the cache or block a real MessageId.
	if !h.replays.claim(p.ID, m.MessageID, now, at.Add(replayWindow)) {
		h.log.Warn("ses hook: replayed notification", "event", "sns_replay", "provider", providerID)
		reply(w, http.StatusConflict, "duplicate", "notification already received")
		return
	}
	switch m.Type {
	case snsSubscribe:
		err = h.verifier.Confirm(r.Context(), &m)
		if err == nil {
			h.log.Info("ses hook: subscription confirmed", "event", "sns_subscribed", "provider", providerID, "topic", m.TopicArn)
		}
	case snsUnsubscribe:
		h.log.Info("ses hook: unsubscribed", "event", "sns_unsubscribed", "provider", providerID, "topic", m.TopicArn)
	case snsNotification:
		err = h.notification(p, &m)
	default:
		err = errSNSShape
	}
	switch {
	case err == nil:
		reply(w, http.StatusOK, "ok", "")
	case errors.Is(err, errSNSShape) || errors.Is(err, errSNSURL):
		// Signed but unusable: retrying will not help, so 4xx.
		h.log.Warn("ses hook: notification not usable", "event", "sns_unusable", "provider", providerID, "err", err)
		reply(w, http.StatusUnprocessableEntity, "error", "notification not usable")
	default:
		h.replays.drop(p.ID, m.MessageID) // SNS retries a 5xx: let the retry in
		h.log.Error("ses hook: handling a notification failed", "provider", providerID, "err", err)
		reply(w, http.StatusInternalServerError, "error", "temporary failure")
	}
}

// ManagedHookID is the id under which the managed account's topic may
// post (POST /hooks/ses/managed): the operator subscribes one URL for the
// shared SES account instead of some team's managed provider, which
// would stop working when that team is deleted.
const ManagedHookID = "managed"

// provider is the provider a post names: a stored one, or for
// ManagedHookID a stand-in for the managed account as a whole.
func (h *SESHook) provider(id string) (*store.Provider, error) {
	if id == ManagedHookID {
		return &store.Provider{ID: ManagedHookID, Type: store.TypeManagedSES, Managed: true}, nil
	}
	return h.st.Provider(id)
}

// readLimited reads r's body up to limit bytes; more is an error.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var b bytes.Buffer
	n, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if err != nil || n > limit {
		return nil, errors.New("body too large")
	}
	return b.Bytes(), nil
}

// sesRecipient is one recipient of a bounce or complaint.
type sesRecipient struct {
	EmailAddress   string `json:"emailAddress"`
	Action         string `json:"action"`
	Status         string `json:"status"`
	DiagnosticCode string `json:"diagnosticCode"`
}

// sesNotification is an SES notification: the direct SNS shape
// (notificationType) or event publishing through a configuration set
// (eventType); the objects inside are the same.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Mail             struct {
		MessageID string `json:"messageId"`
	} `json:"mail"`
	Bounce *struct {
		BounceType        string         `json:"bounceType"`
		BounceSubType     string         `json:"bounceSubType"`
		BouncedRecipients []sesRecipient `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients  []sesRecipient `json:"complainedRecipients"`
		ComplaintFeedbackType string         `json:"complaintFeedbackType"`
	} `json:"complaint"`
}

// notification records what an SES notification says about a message
// provider p (or, for the managed account, any team's managed provider)
// sent.
func (h *SESHook) notification(p *store.Provider, m *SNSMessage) error {
	var n sesNotification
	if err := json.Unmarshal([]byte(m.Message), &n); err != nil {
		return errSNSShape
	}
	typ := n.NotificationType
	if typ == "" {
		typ = n.EventType
	}
	var rep *Report
	switch typ {
	case "Bounce":
		if n.Bounce == nil {
			return errSNSShape
		}
		rep = &Report{Kind: KindDSN, Source: "ses"}
		for _, r := range n.Bounce.BouncedRecipients {
			if len(rep.Recipients) == maxRcpts {
				break
			}
			rep.Recipients = append(rep.Recipients, Recipient{Address: sesAddress(r.EmailAddress), Action: "failed",
				Status: sesStatus(n.Bounce.BounceType, n.Bounce.BounceSubType, r.Status), Diagnostic: r.DiagnosticCode})
		}
	case "Complaint":
		if n.Complaint == nil {
			return errSNSShape
		}
		ft := strings.ToLower(n.Complaint.ComplaintFeedbackType)
		if ft == "" {
			ft = "abuse" // SES omits it when the ISP's report named none
		}
		rep = &Report{Kind: KindARF, Source: "ses", FeedbackType: ft}
		for _, r := range n.Complaint.ComplainedRecipients {
			if len(rep.ComplaintRcpts) == maxRcpts {
				break
			}
			if a := sesAddress(r.EmailAddress); a != "" {
				rep.ComplaintRcpts = append(rep.ComplaintRcpts, a)
			}
		}
		if len(rep.ComplaintRcpts) == 0 {
			return errSNSShape // never "any recipient" from SES
		}
	default:
		// Delivery, Send, Open, DeliveryDelay…: SES accepted the message
		// already when the attempt ended, so nothing to record.
		return nil
	}
	msg, err := h.st.MessageBySESID(n.Mail.MessageID)
	if errors.Is(err, store.ErrNotFound) {
		h.rec.metrics.Report("ses", "ignored")
		return nil
	}
	if err != nil {
		return err
	}
	if !mayReport(p, msg, n.Mail.MessageID) {
		h.log.Warn("ses hook: notification about a message of another account", "event", "sns_foreign",
			"provider", p.ID, "msg_id", msg.ID)
		h.rec.metrics.Report("ses", "ignored")
		return nil
	}
	return h.rec.Record(msg.ID, verp.AllRecipients, rep)
}

// mayReport says whether a notification arriving for provider p may
// speak about msg: the attempt SES accepted as sesID must have gone
// through the same kind of account — for a team's own SES, that team's;
// for the managed account (one SES account behind every team's managed
// provider), any team's managed provider.
func mayReport(p *store.Provider, msg *store.Message, sesID string) bool {
	for _, a := range msg.Attempts {
		if a.UpstreamID != sesID {
			continue
		}
		if p.Type == store.TypeManagedSES {
			return a.ProviderType == store.TypeManagedSES
		}
		return a.ProviderType == store.TypeSES && msg.TeamID == p.TeamID
	}
	return false
}

// sesAddress is the bare, lower-case address of an SES recipient field
// (normally bare already; a display-name form is tolerated).
func sesAddress(s string) string {
	s = strings.TrimSpace(s)
	if a, err := netmail.ParseAddress(s); err == nil {
		s = a.Address
	}
	if len(s) > 320 || !strings.Contains(s, "@") {
		return ""
	}
	return strings.ToLower(s)
}

// sesStatus is the RFC 3463 status a bounced recipient is judged by: the
// remote server's own when SES passed it on (routing's table decides, as
// for every other bounce), else one standing for SES's classification:
// a Permanent bounce of the address (General, NoEmail, Suppressed,
// OnAccountSuppressionList) is 5.1.1, a Transient MailboxFull is 4.2.2;
// the rest (content rejected, too large, undetermined) says nothing
// about the address.
func sesStatus(bounceType, subType, status string) string {
	status = strings.TrimSpace(status)
	if status != "" {
		return status
	}
	switch bounceType {
	case "Permanent":
		switch subType {
		case "General", "NoEmail", "Suppressed", "OnAccountSuppressionList":
			return "5.1.1"
		}
	case "Transient":
		if subType == "MailboxFull" {
			return "4.2.2"
		}
	}
	return ""
}
