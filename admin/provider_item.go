package admin

import (
	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// providerItem is the public shape of a provider (SPEC §3 ProviderItem).
// It is built field by field from store.Provider rather than by embedding
// it, so that a secret added to the store type can never reach a response
// by accident. Unset optional values are null, not "".
type providerItem struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	Type            string         `json:"type"`
	Status          state.Provider `json:"status"`
	StatusReason    *string        `json:"status_reason"`
	IsActive        bool           `json:"is_active"`
	Managed         bool           `json:"is_shared"`
	IsEditable      bool           `json:"is_editable"`
	AllowedActions  allowedActions `json:"allowed_actions"`
	SMTPHost        *string        `json:"smtp_host"`
	SMTPPort        *int           `json:"smtp_port"`
	SMTPProtocol    *string        `json:"smtp_protocol"`
	SMTPUsername    *string        `json:"smtp_username"`
	HasSMTPPassword bool           `json:"has_smtp_password"`
	// Own Amazon SES account settings (type ses); the secret key is
	// write-only.
	SESRegion             *string      `json:"ses_region"`
	SESAccessKeyID        *string      `json:"ses_access_key_id"`
	HasSESSecretAccessKey bool         `json:"has_ses_secret_access_key"`
	SESEndpoint           *string      `json:"ses_endpoint"`
	SESConfigurationSet   *string      `json:"ses_configuration_set"`
	SESSNSTopicARN        *string      `json:"ses_sns_topic_arn"`
	FromEmail             *string      `json:"from_email"`
	FromName              *string      `json:"from_name"`
	ReplyToEmail          *string      `json:"reply_to_email"`
	ReplyToName           *string      `json:"reply_to_name"`
	OAuthEmail            *string      `json:"oauth_email"`
	HasRefreshToken       bool         `json:"has_refresh_token"`
	Quotas                store.Quotas `json:"quotas"`
	Percentage            *int         `json:"percentage"`
	GroupID               *string      `json:"group_id"`
	TrackingDomain        *string      `json:"tracking_domain"`
	ReturnPathDomain      *string      `json:"return_path_domain"`
	// Held is set while the managed account is held for deliverability.
	Held         *heldView           `json:"held"`
	Health       provhealth.Snapshot `json:"health"`
	CreatedAt    string              `json:"created_at"`
	UpdatedAt    string              `json:"updated_at"`
	LastTestedAt *string             `json:"last_tested_at"`
	LastUsedAt   *string             `json:"last_used_at"`
}

// allowedActions tells a UI which buttons make sense for this provider in
// its current state, so clients need not re-implement the managed-account
// rules.
type allowedActions struct {
	Update     bool `json:"update"`
	Delete     bool `json:"delete"`
	Activate   bool `json:"activate"`
	Deactivate bool `json:"deactivate"`
	Test       bool `json:"test"`
}

func (s *Server) providerView(p *store.Provider) providerItem {
	editable := !p.Managed
	it := providerItem{
		ID:           p.ID,
		Name:         p.Name,
		Type:         p.Type,
		Status:       p.Status,
		StatusReason: nullable(p.StatusReason),
		IsActive:     p.Status == state.ProviderActive,
		Managed:      p.Managed,
		IsEditable:   editable,
		AllowedActions: allowedActions{
			Update: editable,
			Delete: editable,
			// A pending (OAuth) account needs a reconnect, not a switch.
			Activate:   p.Status != state.ProviderActive && p.Status != state.ProviderPending,
			Deactivate: p.Status != state.ProviderInactive,
			Test:       editable,
		},
		SMTPHost:        nullable(p.SMTPHost),
		SMTPProtocol:    nullable(p.SMTPProtocol),
		SMTPUsername:    nullable(p.SMTPUsername),
		HasSMTPPassword: len(p.SMTPPasswordSealed) > 0,
		OAuthEmail:      nullable(p.OAuthEmail), HasRefreshToken: len(p.OAuthTokenSealed) > 0,
		SESRegion: nullable(p.SESRegion), SESAccessKeyID: nullable(p.SESAccessKeyID),
		HasSESSecretAccessKey: len(p.SESSecretSealed) > 0, SESEndpoint: nullable(p.SESEndpoint),
		SESConfigurationSet: nullable(p.SESConfigurationSet), SESSNSTopicARN: nullable(p.SNSTopicARN),
		FromEmail:        nullable(p.FromEmail),
		FromName:         nullable(p.FromName),
		ReplyToEmail:     nullable(p.ReplyToEmail),
		ReplyToName:      nullable(p.ReplyToName),
		Quotas:           p.Quotas,
		Percentage:       p.Percentage,
		GroupID:          nullable(p.GroupID),
		TrackingDomain:   nullable(p.TrackingDomain),
		ReturnPathDomain: nullable(p.ReturnPathDomain),
		Held:             heldOf(p),
		Health:           s.health(p.ID),
		CreatedAt:        rfc3339(p.CreatedAt),
		UpdatedAt:        rfc3339(p.UpdatedAt),
		LastTestedAt:     rfc3339p(p.LastTestedAt),
		LastUsedAt:       rfc3339p(p.LastUsedAt),
	}
	if p.SMTPPort != 0 {
		port := p.SMTPPort
		it.SMTPPort = &port
	}
	return it
}

// health asks the delivery side for the provider's breaker state; without
// one, every provider is in rotation ("closed").
func (s *Server) health(id string) provhealth.Snapshot {
	if s.opts.Providers.Health != nil {
		return s.opts.Providers.Health(id)
	}
	return provhealth.Snapshot{State: "closed"}
}

// heldView is a held managed account's hold.
type heldView struct {
	Reason string `json:"reason"`
	At     string `json:"at"`
}

func heldOf(p *store.Provider) *heldView {
	if p.Held == nil {
		return nil
	}
	return &heldView{Reason: p.Held.Reason, At: rfc3339(p.Held.At)}
}
