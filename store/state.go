package store

import "time"

// StateOfRecord is the state a team configures and the relay reads:
// teams, keys and credentials, providers, delivery groups, mailboxes,
// domains, webhooks and limit requests. Messages, bodies and the queue
// indexes are not part of it: they are each node's local spool.
//
// Store (bbolt) is its one implementation today. It is written down so
// that a second backend can sit behind the same methods (cluster mode on
// etcd): every team-scoped read takes the team first, and the bbolt
// layout keeps a team's records behind one key prefix per kind (see
// teamKind), which is a key range in etcd too. The rules every
// implementation keeps: another team's record is ErrNotFound; ifVersion
// > 0 makes a write conditional (ErrConflict when the version moved);
// every edit bumps Version; update callbacks may run more than once and
// cannot change a record's ID or team; lists are in creation order.
type StateOfRecord interface {
	TeamState
	KeyState
	ProviderState
	GroupState
	MailboxState
	DomainState
	WebhookState
	LimitRequestState
}

// TeamState holds the tenants.
type TeamState interface {
	PutTeam(t *Team) error
	Team(id string) (*Team, error)
	TeamByName(name string) (*Team, error)
	Teams() ([]*Team, error)
}

// KeyState holds API keys and resolves presented secrets (keys and
// mailbox passwords) to credentials.
type KeyState interface {
	CreateKey(k *APIKey) error
	Key(id string) (*APIKey, error)
	KeyBySecret(secret string) (*APIKey, error)
	Keys(teamID string) ([]*APIKey, error)
	UpdateKey(teamID, id string, fn func(*APIKey) error) (*APIKey, error)
	TouchKey(id string, at time.Time) error
	CredentialBySecret(secret string) (*Credential, error)
	CredentialByID(kind, id string) (*Credential, error)
}

// ProviderState holds sending accounts.
type ProviderState interface {
	CreateProvider(p *Provider) error
	Provider(id string) (*Provider, error)
	TeamProvider(teamID, id string) (*Provider, error)
	Providers(teamID string) ([]*Provider, error)
	UpdateProvider(teamID, id string, ifVersion int64, fn func(*Provider) error) (*Provider, error)
	DeleteProvider(teamID, id string, ifVersion int64) error
	SetProviderToken(id string, sealed []byte) error
	TouchProvider(id string, at time.Time) error
	ProvidersGen() int64
	// ProviderChangedTeams drains the teams whose providers changed.
	ProviderChangedTeams() []string
}

// GroupState holds delivery groups.
type GroupState interface {
	CreateGroup(g *DeliveryGroup) error
	Group(teamID, id string) (*DeliveryGroup, error)
	Groups(teamID string) ([]*DeliveryGroup, error)
	UpdateGroup(teamID, id string, ifVersion int64, fn func(*DeliveryGroup) error) (*DeliveryGroup, error)
	DeleteGroup(teamID, id string, ifVersion int64, now time.Time) (*GroupDeletion, error)
}

// MailboxState holds mailboxes and their passwords.
type MailboxState interface {
	CreateMailbox(m *Mailbox) error
	Mailbox(id string) (*Mailbox, error)
	TeamMailbox(teamID, id string) (*Mailbox, error)
	MailboxByAddress(teamID, address string) (*Mailbox, error)
	Mailboxes(teamID string) ([]*Mailbox, error)
	UpdateMailbox(teamID, id string, ifVersion int64, fn func(*Mailbox) error) (*Mailbox, error)
	DeleteMailbox(teamID, id string, ifVersion int64) error
	CreateMailboxPassword(p *MailboxPassword) error
	MailboxPasswords(teamID, mailboxID string) ([]*MailboxPassword, error)
	MailboxPassword(id string) (*MailboxPassword, error)
	RevokeMailboxPassword(teamID, mailboxID, id string, at time.Time) (*MailboxPassword, error)
}

// DomainState holds sending domains and their DKIM keys.
type DomainState interface {
	CreateDomain(d *Domain, max int) error
	Domain(teamID, id string) (*Domain, error)
	DomainByName(teamID, name string) (*Domain, error)
	Domains(teamID string) ([]*Domain, error)
	UpdateDomain(teamID, id string, ifVersion int64, fn func(*Domain) error) (*Domain, error)
	DeleteDomain(teamID, id string, ifVersion int64) error
}

// WebhookState holds webhook subscriptions (not their deliveries, which
// are queued work like messages).
type WebhookState interface {
	CreateWebhook(w *Webhook, max int) error
	WebhookByID(id string) (*Webhook, error)
	Webhook(teamID, id string) (*Webhook, error)
	Webhooks(teamID string) ([]*Webhook, error)
	UpdateWebhook(teamID, id string, ifVersion int64, fn func(*Webhook) error) (*Webhook, error)
	DeleteWebhook(teamID, id string, ifVersion int64) error
}

// LimitRequestState holds limit-increase requests.
type LimitRequestState interface {
	CreateLimitRequest(r *LimitRequest) error
	LimitRequest(id string) (*LimitRequest, error)
	PendingLimitRequest(teamID, typ string) (*LimitRequest, error)
	LimitRequests(f LimitRequestFilter, before string, limit int) ([]*LimitRequest, bool, error)
	ResolveLimitRequest(teamID, id string, fn func(*LimitRequest, *Team) error) (*LimitRequest, *Team, error)
}

// The bbolt store is the default backend of the state of record.
var _ StateOfRecord = (*Store)(nil)
