package store

import (
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// Provider types (SPEC §2).
const (
	TypeManagedSES = "amazon_ses"
	TypeSMTP       = "smtp"
	TypeSES        = "ses"
	TypeGmail      = "gmail_api"
	TypeOutlook    = "outlook_api"
)

// Range is a quota value: fixed when Min == Max, otherwise a value in
// [Min, Max] is drawn at each hourly refresh.
type Range struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Quotas are per-window caps; nil means unlimited.
type Quotas struct {
	PerSecond *Range `json:"per_second"`
	PerMinute *Range `json:"per_minute"`
	PerHour   *Range `json:"per_hour"`
	PerDay    *Range `json:"per_day"`
}

// Provider is one sending account of a team. Secret fields hold sealed
// bytes (see Sealer) and never leave the daemon.
type Provider struct {
	ID           string         `json:"id"`
	TeamID       string         `json:"team_id"`
	Name         string         `json:"name"`
	Type         string         `json:"type"`
	Status       state.Provider `json:"status"`
	StatusReason string         `json:"status_reason,omitempty"`
	// Managed marks the team's managed Amazon SES account (type
	// amazon_ses), created by the daemon; wire name is_shared.
	Managed bool `json:"is_shared"`

	SMTPHost           string `json:"smtp_host,omitempty"`
	SMTPPort           int    `json:"smtp_port,omitempty"`
	SMTPProtocol       string `json:"smtp_protocol,omitempty"`
	SMTPUsername       string `json:"smtp_username,omitempty"`
	SMTPPasswordSealed []byte `json:"smtp_password_sealed,omitempty"`

	// Own Amazon SES account (type ses).
	SESRegion           string `json:"ses_region,omitempty"`
	SESAccessKeyID      string `json:"ses_access_key_id,omitempty"`
	SESSecretSealed     []byte `json:"ses_secret_sealed,omitempty"`
	SESEndpoint         string `json:"ses_endpoint,omitempty"`
	SESConfigurationSet string `json:"ses_configuration_set,omitempty"`
	// SNSTopicARN is the SNS topic the account's SES notifications come
	// from (POST /hooks/ses/{id} refuses any other); "" refuses all.
	SNSTopicARN string `json:"ses_sns_topic_arn,omitempty"`

	// Connected accounts (gmail_api, outlook_api): the authorised address
	// and the sealed OAuth token (JSON, refresh token included).
	OAuthEmail       string `json:"oauth_email,omitempty"`
	OAuthTokenSealed []byte `json:"oauth_token_sealed,omitempty"`

	FromEmail      string `json:"from_email,omitempty"`
	FromName       string `json:"from_name,omitempty"`
	ReplyToEmail   string `json:"reply_to_email,omitempty"`
	ReplyToName    string `json:"reply_to_name,omitempty"`
	TrackingDomain string `json:"tracking_domain,omitempty"`
	// ReturnPathDomain (smtp providers) makes deliveries use a VERP
	// envelope sender b+<token>@ReturnPathDomain, so that bounces and
	// feedback reports come back to the bounce listener (SPEC §13).
	ReturnPathDomain string `json:"return_path_domain,omitempty"`
	// Held is set while the managed account is held for deliverability
	// (managed_hold.go); only the operator releases it.
	Held   *ManagedHold `json:"held,omitempty"`
	Quotas Quotas       `json:"quotas"`
	// Percentage is the routing weight 0–100; nil means unset (equal split).
	Percentage *int   `json:"percentage,omitempty"`
	GroupID    string `json:"group_id,omitempty"`

	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	LastTestedAt *time.Time `json:"last_tested_at,omitempty"`
	LastUsedAt   *time.Time `json:"last_used_at,omitempty"`
	// ActivatedAt is when an operator last (re)activated the provider or
	// a test cleared its error; auth failures recorded on messages before
	// it no longer exclude the provider.
	ActivatedAt time.Time `json:"activated_at"`
	// Version increases with every write; it is the ETag and lets the
	// scheduler rebuild a provider's connection pool after an edit.
	Version int64 `json:"version"`
}

// CreateProvider stores a new provider.
func (s *Store) CreateProvider(p *Provider) error {
	err := s.updateRecord(func(tx *bolt.Tx) error {
		if err := createTeamRecord(tx, kindProviders, p); err != nil {
			return err
		}
		return bumpWakeGen(tx, p.TeamID)
	})
	s.providersChanged(err, p.TeamID)
	return err
}

// CreateOwnProvider stores a new provider of the team's own (not the
// managed account) if the team has fewer than max of those (max <= 0: no
// cap), else ErrLimit. The count is inside the write's transaction, so
// the cap holds across concurrent creates, in cluster mode across nodes
// too (the write is re-run when another write landed first).
func (s *Store) CreateOwnProvider(p *Provider, max int) error {
	err := s.updateRecord(func(tx *bolt.Tx) error {
		if max > 0 {
			existing, err := listTeam[Provider](tx, kindProviders, p.TeamID)
			if err != nil {
				return err
			}
			own := 0
			for _, e := range existing {
				if !e.Managed {
					own++
				}
			}
			if own >= max {
				return ErrLimit
			}
		}
		if err := createTeamRecord(tx, kindProviders, p); err != nil {
			return err
		}
		return bumpWakeGen(tx, p.TeamID)
	})
	s.providersChanged(err, p.TeamID)
	return err
}

// Provider returns one provider regardless of team (for the scheduler).
func (s *Store) Provider(id string) (*Provider, error) {
	return s.TeamProvider(anyTeam, id)
}

// TeamProvider returns a provider only if it belongs to teamID.
func (s *Store) TeamProvider(teamID, id string) (*Provider, error) {
	var p *Provider
	err := s.view(func(tx *bolt.Tx) (err error) {
		p, err = getTeamRecord[Provider](tx, kindProviders, teamID, id)
		return err
	})
	return p, err
}

// Providers lists a team's providers in creation order; teamID "" lists all.
func (s *Store) Providers(teamID string) ([]*Provider, error) {
	var out []*Provider
	err := s.view(func(tx *bolt.Tx) (err error) {
		if teamID == "" {
			out, err = listAll[Provider](tx, kindProviders)
		} else {
			out, err = listTeam[Provider](tx, kindProviders, teamID)
		}
		return err
	})
	return out, err
}

// UpdateProvider applies fn to the team's stored provider and saves it with
// a new version. ifVersion > 0 makes the write conditional (If-Match).
// teamID "" accepts any team's provider (the relay's status writes).
func (s *Store) UpdateProvider(teamID, id string, ifVersion int64, fn func(*Provider) error) (*Provider, error) {
	if teamID == "" {
		teamID = anyTeam
	}
	var out *Provider
	err := s.updateRecord(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindProviders, teamID, id, ifVersion, fn)
		if err != nil {
			return err
		}
		return bumpWakeGen(tx, out.TeamID)
	})
	if err != nil {
		s.providersChanged(err, "")
		return nil, err
	}
	s.providersChanged(nil, out.TeamID)
	return out, nil
}

// DeleteProvider removes a team's provider. Messages keep its ID in their
// attempts; the scheduler simply no longer finds it.
func (s *Store) DeleteProvider(teamID, id string, ifVersion int64) error {
	var owner string
	err := s.updateRecord(func(tx *bolt.Tx) error {
		p, err := deleteTeamRecord[Provider](tx, kindProviders, teamID, id, ifVersion)
		if err != nil {
			return err
		}
		owner = p.TeamID
		return bumpWakeGen(tx, owner)
	})
	s.providersChanged(err, owner)
	return err
}

// SetProviderToken replaces a connected account's sealed OAuth token after
// a refresh. It does not bump Version: a token refresh is not an edit (it
// must not break an operator's If-Match, nor rebuild the live provider
// whose token source made the refresh), nor a change of usability (the
// provider that refreshed it was usable before and is after), so it wakes
// no one and leaves the team's wake generation alone.
func (s *Store) SetProviderToken(id string, sealed []byte) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		b := tx.Bucket(bProviders)
		var p Provider
		if err := getJSON(b, id, &p); err != nil {
			return err
		}
		p.OAuthTokenSealed = sealed
		return putJSON(b, id, &p)
	})
}
