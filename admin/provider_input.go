package admin

import (
	"bytes"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/smtpproto"
	"github.com/smtpmux/smtpmux/store"
)

// providerFields are the members a create or PATCH body may carry; read-only
// fields of ProviderItem (id, status, …) are unknown here on purpose.
var providerFields = []string{
	"type", "name", "smtp_host", "smtp_port", "smtp_protocol", "smtp_username", "smtp_password",
	"from_email", "from_name", "reply_to_email", "reply_to_name", "tracking_domain", "return_path_domain",
	"quotas", "percentage", "group_id",
	"ses_region", "ses_access_key_id", "ses_secret_access_key", "ses_endpoint", "ses_configuration_set",
	"ses_sns_topic_arn",
}

// quotaWindows are the quota members in the order they are reported.
var quotaWindows = []string{"per_second", "per_minute", "per_hour", "per_day"}

// maxQuota keeps quota arithmetic far from integer overflow while being
// far above any real upstream's limit.
const maxQuota = 1_000_000_000

// providerInput is a decoded (type-checked, not yet validated) provider
// body. Every member keeps its presence, because PATCH leaves absent
// fields unchanged and treats null specially.
type providerInput struct {
	typ, name, host, protocol, username, password httpapi.Opt[string]
	fromEmail, fromName, replyEmail, replyName    httpapi.Opt[string]
	tracking, group, returnPath                   httpapi.Opt[string]
	port, percentage                              httpapi.Opt[int]
	quotasSet, quotasNull                         bool
	windows                                       [4]rangeInput
	ses                                           sesInput
}

// rangeInput is one quota window: absent, null, a fixed integer, or a
// {min,max} object.
type rangeInput struct {
	set, null bool
	fixed     *int
	min, max  httpapi.Opt[int]
}

// decodeProvider type-checks a provider body; its errors are 400s.
func decodeProvider(o *httpapi.Object) (*providerInput, error) {
	if err := o.Allow(providerFields...); err != nil {
		return nil, err
	}
	in := &providerInput{}
	var err error
	strs := []struct {
		name string
		dst  *httpapi.Opt[string]
	}{
		{"type", &in.typ}, {"name", &in.name}, {"smtp_host", &in.host}, {"smtp_protocol", &in.protocol},
		{"smtp_username", &in.username}, {"smtp_password", &in.password},
		{"from_email", &in.fromEmail}, {"from_name", &in.fromName},
		{"reply_to_email", &in.replyEmail}, {"reply_to_name", &in.replyName},
		{"tracking_domain", &in.tracking}, {"group_id", &in.group}, {"return_path_domain", &in.returnPath},
	}
	strs = append(strs, in.ses.fields()...)
	for _, f := range strs {
		if *f.dst, err = httpapi.Field[string](o, f.name); err != nil {
			return nil, err
		}
	}
	if in.port, err = httpapi.Field[int](o, "smtp_port"); err != nil {
		return nil, err
	}
	if in.percentage, err = httpapi.Field[int](o, "percentage"); err != nil {
		return nil, err
	}
	if !o.Has("quotas") {
		return in, nil
	}
	in.quotasSet = true
	if o.IsNull("quotas") {
		in.quotasNull = true
		return in, nil
	}
	q, err := o.Child("quotas")
	if err != nil {
		return nil, err
	}
	if err := q.Allow(quotaWindows...); err != nil {
		return nil, err
	}
	for i, w := range quotaWindows {
		if in.windows[i], err = decodeRange(q, w); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func decodeRange(q *httpapi.Object, name string) (rangeInput, error) {
	var r rangeInput
	raw := q.Raw(name)
	if raw == nil {
		return r, nil
	}
	r.set = true
	raw = bytes.TrimSpace(raw)
	switch {
	case q.IsNull(name):
		r.null = true
	case len(raw) > 0 && raw[0] == '{':
		obj, err := q.Child(name)
		if err != nil {
			return r, err
		}
		if err := obj.Allow("min", "max"); err != nil {
			return r, err
		}
		if r.min, err = httpapi.Field[int](obj, "min"); err != nil {
			return r, err
		}
		if r.max, err = httpapi.Field[int](obj, "max"); err != nil {
			return r, err
		}
	default:
		n, err := httpapi.Field[int](q, name)
		if err != nil {
			return r, httpapi.ErrInvalidParam(q.Path()+name, "%s must be an integer, an object {\"min\",\"max\"} or null", q.Path()+name)
		}
		r.fixed = &n.V
	}
	return r, nil
}

// checkType validates the type of a new provider. Only custom SMTP can be
// created today; the others get a message saying why rather than a bare
// "invalid".
func checkType(in *providerInput) (string, error) {
	if !in.typ.Set || in.typ.Null {
		return store.TypeSMTP, nil
	}
	switch t := in.typ.V; t {
	case store.TypeSMTP:
		return t, nil
	case store.TypeSES:
		return t, nil
	case store.TypeManagedSES:
		return "", httpapi.ErrValidation("type", httpapi.FieldNotSupported, "the managed Amazon SES account is created automatically and cannot be added")
	case store.TypeGmail, store.TypeOutlook:
		return "", httpapi.ErrValidation("type", httpapi.FieldNotSupported, t+" accounts are added through the OAuth connect flow, which is not available yet")
	case "http":
		return "", httpapi.ErrValidation("type", httpapi.FieldNotSupported, `type "http" is coming soon`)
	default:
		return "", httpapi.ErrValidation("type", httpapi.FieldInvalid, `type must be "smtp" or "ses"`)
	}
}

// sealedSecrets are the write-only secrets of a body, encrypted once
// outside the store transaction so that a retried transaction does not
// re-encrypt (nil when absent).
type sealedSecrets struct{ smtpPassword, sesSecret []byte }

// applyProvider validates in and applies it to p, recording every problem
// in v. create makes the required fields required; in a PATCH absent
// fields stay as they are.
//
// It must be deterministic: the store may run it more than once.
func applyProvider(in *providerInput, p *store.Provider, v *httpapi.Validator, create bool, sealed sealedSecrets, pol providerPolicy) {
	if in.typ.Set && !create && (in.typ.Null || in.typ.V != p.Type) {
		v.Add("type", httpapi.FieldNotEditable, "type cannot be changed; create a new provider instead")
	}
	switch {
	case in.name.Set && !in.name.Null:
		p.Name = httpapi.CheckName(v, "name", in.name.V, 100)
	case in.name.Set || create:
		v.Add("name", httpapi.FieldRequired, "name is required")
	}
	if in.host.Set {
		h := ""
		if !in.host.Null {
			h = in.host.V
		}
		switch {
		case h == "":
			p.SMTPHost = "" // reported as required below
		case len(h) > 253 || !httpapi.ValidHost(h):
			v.Add("smtp_host", httpapi.FieldInvalidHost, "smtp_host must be a hostname or IP address, without scheme, port or spaces (e.g. smtp.example.com)")
		default:
			p.SMTPHost = strings.ToLower(h)
		}
	}
	if in.port.Set {
		switch {
		case in.port.Null:
			p.SMTPPort = 0 // reported as required below
		case in.port.V < 1 || in.port.V > 65535:
			v.Add("smtp_port", httpapi.FieldOutOfRange, "smtp_port must be between 1 and 65535")
		default:
			p.SMTPPort = in.port.V
		}
	}
	switch {
	case in.protocol.Set && (in.protocol.Null || !smtpproto.Valid(in.protocol.V)):
		v.Add("smtp_protocol", httpapi.FieldInvalid, "smtp_protocol must be one of: "+strings.Join(smtpproto.All(), ", "))
	case in.protocol.Set:
		p.SMTPProtocol = in.protocol.V
	case create:
		p.SMTPProtocol = smtpproto.Default
	}
	if in.username.Set {
		p.SMTPUsername = httpapi.CheckText(v, "smtp_username", in.username.V, 255)
	}
	// Password: a value replaces, "" keeps the stored one (forms resend
	// blank password fields), null removes it (unauthenticated relays).
	if in.password.Set {
		switch {
		case in.password.Null:
			p.SMTPPasswordSealed = nil
		case in.password.V == "":
		case len(in.password.V) > 1024 || strings.ContainsAny(in.password.V, "\x00\r\n"):
			v.Add("smtp_password", httpapi.FieldInvalid, "smtp_password must be at most 1024 characters without NUL, CR or LF")
		default:
			p.SMTPPasswordSealed = sealed.smtpPassword
		}
	}
	if in.fromEmail.Set {
		p.FromEmail = httpapi.CheckEmail(v, "from_email", in.fromEmail.V)
	}
	if in.fromName.Set {
		p.FromName = httpapi.CheckText(v, "from_name", strings.TrimSpace(in.fromName.V), 200)
	}
	if in.replyEmail.Set {
		p.ReplyToEmail = httpapi.CheckEmail(v, "reply_to_email", in.replyEmail.V)
	}
	if in.replyName.Set {
		p.ReplyToName = httpapi.CheckText(v, "reply_to_name", strings.TrimSpace(in.replyName.V), 200)
	}
	if in.tracking.Set {
		d := strings.ToLower(strings.TrimSpace(in.tracking.V))
		if d != "" && !httpapi.ValidDomain(d) {
			v.Add("tracking_domain", httpapi.FieldInvalidHost, "tracking_domain must be a domain name such as links.example.com")
		}
		p.TrackingDomain = d
	}
	if in.returnPath.Set {
		d := strings.ToLower(strings.TrimSpace(in.returnPath.V))
		switch {
		case d != "" && !httpapi.ValidDomain(d):
			v.Add("return_path_domain", httpapi.FieldInvalidHost, "return_path_domain must be a domain name such as bounces.example.com")
		case d != "" && p.Type != store.TypeSMTP:
			// Only an SMTP upstream takes our MAIL FROM as it is.
			v.Add("return_path_domain", httpapi.FieldNotSupported, "return_path_domain applies to smtp providers only")
		}
		p.ReturnPathDomain = d
	}
	// Judged on every write, like smtp_host below: a domain stored before
	// the rule, or whose verification lapsed, cannot ride along on an
	// edit of something else.
	if p.TrackingDomain != "" && !v.Has("tracking_domain") {
		if code, msg := pol.tracking.problem(p.TrackingDomain); code != "" {
			v.Add("tracking_domain", code, msg)
		}
	}
	if in.group.Set {
		switch {
		case in.group.Null || in.group.V == "":
			p.GroupID = "" // leaves its group
		case p.Managed:
			v.Add("group_id", httpapi.FieldNotSupported, "the managed Amazon SES account cannot join a delivery group")
		default:
			// That the group exists in the team was checked by the
			// caller (checkGroupRef), which holds refMu until the write.
			p.GroupID = in.group.V
		}
	}
	if in.percentage.Set {
		switch {
		case in.percentage.Null:
			p.Percentage = nil
		case in.percentage.V < 0 || in.percentage.V > 100:
			v.Add("percentage", httpapi.FieldOutOfRange, "percentage must be between 0 and 100")
		default:
			n := in.percentage.V
			p.Percentage = &n
		}
	}
	applyQuotas(in, &p.Quotas, v)
	applySES(in, p, v, sealed.sesSecret, pol)

	if p.Type == store.TypeSMTP {
		if p.SMTPHost == "" && !v.Has("smtp_host") {
			v.Add("smtp_host", httpapi.FieldRequired, "smtp_host is required")
		}
		// Judged on every write, not only when smtp_host is sent, so that
		// a host stored before the policy (or while the operator allowed
		// private hosts) cannot ride along on an edit.
		if p.SMTPHost != "" && !v.Has("smtp_host") {
			if code, msg := pol.hostProblem(p.SMTPHost); code != "" {
				v.Add("smtp_host", code, "smtp_host "+msg)
			}
		}
		if p.SMTPPort == 0 && !v.Has("smtp_port") {
			v.Add("smtp_port", httpapi.FieldRequired, "smtp_port is required")
		}
	}
}

func applyQuotas(in *providerInput, q *store.Quotas, v *httpapi.Validator) {
	if !in.quotasSet {
		return
	}
	dst := []**store.Range{&q.PerSecond, &q.PerMinute, &q.PerHour, &q.PerDay}
	for i, w := range in.windows {
		if !in.quotasNull && !w.set {
			continue // absent window: unchanged
		}
		if in.quotasNull || w.null {
			*dst[i] = nil
			continue
		}
		name := "quotas." + quotaWindows[i]
		if w.fixed != nil {
			n := *w.fixed
			if n < 1 || n > maxQuota {
				v.Add(name, httpapi.FieldOutOfRange, name+" must be an integer greater than 0 (or a {min,max} range, or null for unlimited)")
				continue
			}
			*dst[i] = &store.Range{Min: n, Max: n}
			continue
		}
		ok := true
		for _, part := range []struct {
			key string
			o   httpapi.Opt[int]
		}{{"min", w.min}, {"max", w.max}} {
			switch {
			case !part.o.Set || part.o.Null:
				v.Add(name+"."+part.key, httpapi.FieldRequired, name+"."+part.key+" is required in a range")
				ok = false
			case part.o.V < 1 || part.o.V > maxQuota:
				v.Add(name+"."+part.key, httpapi.FieldOutOfRange, name+"."+part.key+" must be greater than 0")
				ok = false
			}
		}
		if !ok {
			continue
		}
		if w.min.V > w.max.V {
			v.Add(name, httpapi.FieldInvalid, name+".min must not exceed "+name+".max")
			continue
		}
		*dst[i] = &store.Range{Min: w.min.V, Max: w.max.V}
	}
}
