package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/netclass"
	"github.com/smtpmux/smtpmux/store"
)

// leaseMargin is added to the attempt timeout when a delivery is claimed:
// the claim moves its due time past the attempt, so that after a crash the
// delivery becomes due again by itself, and never while the attempt could
// still be running.
const leaseMargin = time.Minute

// interrupted is what a claimed attempt says until its outcome replaces
// it, which is therefore what a crash mid-attempt leaves behind.
const interrupted = "interrupted before an answer was recorded"

// attempt makes one delivery attempt: claim (durably, before any network
// I/O), POST, record the outcome and the next due time.
func (d *Dispatcher) attempt(ctx context.Context, id string) {
	now := d.now()
	var number int
	dl, err := d.st.UpdateWebhookDelivery(id, func(dl *store.WebhookDelivery) error {
		if dl.Status != store.DeliveryPending {
			return errNotPending
		}
		dl.Attempts = append(dl.Attempts, store.DeliveryAttempt{At: now, Error: interrupted})
		dl.NextAttemptAt = now.Add(d.opts.Timeout + leaseMargin)
		number = len(dl.Attempts)
		return nil
	})
	if errors.Is(err, errNotPending) || errors.Is(err, store.ErrNotFound) {
		return // finished or swept since the due scan
	}
	if err != nil {
		d.log.Error("webhook delivery claim failed", "delivery", id, "err", err)
		return
	}
	w, err := d.st.WebhookByID(dl.WebhookID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.abandon(dl, "webhook was deleted")
		return
	case err != nil:
		d.log.Error("webhook lookup failed", "delivery", id, "err", err)
		d.finish(dl, 0, "internal error reading the webhook", 0, w)
		return
	case !w.Enabled && dl.EventType != event.Test:
		d.abandon(dl, "webhook is disabled")
		return
	}
	code, msg, dur := d.post(ctx, w, dl, number)
	d.finish(dl, code, msg, dur, w)
}

var errNotPending = errors.New("delivery is not pending")

// post sends one attempt and returns the HTTP status (0 when there was no
// answer), an error text ("" on 2xx) and the duration.
func (d *Dispatcher) post(ctx context.Context, w *store.Webhook, dl *store.WebhookDelivery, number int) (int, string, time.Duration) {
	secret, err := d.opts.Sealer.Open(w.SecretSealed)
	if err != nil {
		// Retried: the operator may restore the right secret_key.
		d.log.Error("webhook secret cannot be opened", "webhook", w.ID, "err", err)
		return 0, "cannot open the signing secret", 0
	}
	now := d.now()
	body, err := wire(dl.Event, number, now)
	if err != nil {
		return 0, "corrupt event record", 0
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "invalid url", 0
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "smtpmux-webhooks/1")
	h.Set(HeaderSignature, Sign(secret, body))
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderEventID, dl.EventID)
	h.Set(HeaderEventType, dl.EventType)
	h.Set(HeaderAttempt, strconv.Itoa(number))
	h.Set(HeaderDeliveryID, dl.ID)
	start := time.Now()
	resp, err := d.client.Do(req)
	dur := time.Since(start)
	if err != nil {
		return 0, failure(err, d.opts.Timeout), dur
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused; more would let a
	// hostile endpoint make us read forever. The body is not recorded,
	// only the status: behind [webhooks] allow_private_targets the
	// endpoint may be an internal service, whose answer is not the team's
	// to read.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, "", dur
	}
	return resp.StatusCode, "HTTP status " + strconv.Itoa(resp.StatusCode), dur
}

// failure is what the delivery log (and GET /webhooks/{id}/deliveries)
// says about a request that got no answer: its class in fixed words
// (internal/netclass), never the error's text, which names the address
// the URL's host resolved to ("dial tcp 127.0.0.1:3580") and whether a
// name exists ("no such host") — a map of the operator's network for
// anyone who can create a webhook.
func failure(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || netclass.IsTimeout(err) {
		return fmt.Sprintf("timeout after %s", timeout)
	}
	if m := netclass.Describe(err); m != "" {
		return m
	}
	return "connection failed"
}

// finish records an attempt's outcome: success ends the delivery; failure
// schedules the next retry or, past the schedule, fails it for good.
func (d *Dispatcher) finish(dl *store.WebhookDelivery, code int, errText string, dur time.Duration, w *store.Webhook) {
	now := d.now()
	ok := errText == "" && code >= 200 && code < 300
	var final bool
	out, err := d.st.UpdateWebhookDelivery(dl.ID, func(x *store.WebhookDelivery) error {
		if n := len(x.Attempts); n > 0 {
			x.Attempts[n-1] = store.DeliveryAttempt{At: x.Attempts[n-1].At, StatusCode: code, Error: errText,
				DurationMS: dur.Milliseconds()}
		}
		if ok {
			x.Status, x.CompletedAt = store.DeliverySucceeded, &now
			return nil
		}
		next, more := d.nextAttempt(x, now)
		if !more {
			x.Status, x.CompletedAt, final = store.DeliveryFailed, &now, true
			return nil
		}
		x.NextAttemptAt = next
		return nil
	})
	if err != nil {
		d.log.Error("webhook delivery result not recorded", "delivery", dl.ID, "err", err)
		return
	}
	d.log.Info("webhook attempt", "delivery", dl.ID, "webhook", dl.WebhookID, "event", dl.EventID,
		"type", dl.EventType, "attempt", len(out.Attempts), "status_code", code, "ok", ok, "error", errText,
		"next_attempt_at", out.NextAttemptAt, "final", final)
	if w != nil && (ok && w.Failing || final && !w.Failing) {
		d.setFailing(w, final)
	}
}

// nextAttempt is when a delivery that failed len(Attempts) times goes
// next: at its event time plus the schedule's offset for that retry, but
// never sooner than the first offset from now (a dispatcher that was down
// does not fire a burst of overdue retries). Past the schedule, or past
// its last offset, there is none.
func (d *Dispatcher) nextAttempt(x *store.WebhookDelivery, now time.Time) (time.Time, bool) {
	sch := d.opts.Schedule
	i := len(x.Attempts) - 1 // retries already scheduled before this failure
	if i >= len(sch) || !now.Before(x.CreatedAt.Add(sch[len(sch)-1])) {
		return time.Time{}, false
	}
	next := x.CreatedAt.Add(sch[i])
	if floor := now.Add(sch[0]); next.Before(floor) {
		next = floor
	}
	return next, true
}

// abandon fails a delivery whose webhook is gone or disabled: there is
// nobody to deliver to, and retrying would only delay the same answer.
func (d *Dispatcher) abandon(dl *store.WebhookDelivery, why string) {
	now := d.now()
	_, err := d.st.UpdateWebhookDelivery(dl.ID, func(x *store.WebhookDelivery) error {
		if n := len(x.Attempts); n > 0 {
			x.Attempts = x.Attempts[:n-1] // nothing was sent
		}
		x.Status, x.CompletedAt = store.DeliveryFailed, &now
		x.Attempts = append(x.Attempts, store.DeliveryAttempt{At: now, Error: why})
		return nil
	})
	if err != nil {
		d.log.Error("webhook delivery not abandoned", "delivery", dl.ID, "err", err)
	}
}

func (d *Dispatcher) setFailing(w *store.Webhook, failing bool) {
	_, err := d.st.UpdateWebhook(w.TeamID, w.ID, 0, func(x *store.Webhook) error {
		x.Failing = failing
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.log.Error("webhook failing flag not updated", "webhook", w.ID, "err", err)
	}
	d.Invalidate()
}
