package admin

import (
	"errors"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// passwordItem is the public shape of a mailbox password. Neither the
// secret (only create returns it, once) nor the hash is part of it.
type passwordItem struct {
	ID         string  `json:"id"`
	MailboxID  string  `json:"mailbox_id"`
	Name       string  `json:"name"`
	Prefix     string  `json:"prefix"`
	Status     string  `json:"status"` // active | revoked
	CreatedAt  string  `json:"created_at"`
	RevokedAt  *string `json:"revoked_at"`
	LastUsedAt *string `json:"last_used_at"`
}

// createdPassword is the create answer: the item plus the secret.
type createdPassword struct {
	passwordItem
	Password string `json:"password"`
}

func passwordView(p *store.MailboxPassword) passwordItem {
	it := passwordItem{
		ID: p.ID, MailboxID: p.MailboxID, Name: p.Name, Prefix: p.Prefix, Status: "active",
		CreatedAt: rfc3339(p.CreatedAt), RevokedAt: rfc3339p(p.RevokedAt), LastUsedAt: rfc3339p(p.LastUsedAt),
	}
	if !p.Active() {
		it.Status = "revoked"
	}
	return it
}

// createPassword is POST /mailboxes/{id}/passwords {"name"}. The secret
// has the sending-key form (smx_mbx_…, 256 bits), so SMTP clients and the
// HTTP API accept it wherever they accept a sending key; only its hash is
// stored. A suspended mailbox may get passwords: they work once it is
// resumed.
func (s *Server) createPassword(c *call) error {
	m, err := s.res.mailboxes.load(c)
	if err != nil {
		return err
	}
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	if err := o.Allow("name"); err != nil {
		return err
	}
	name, err := httpapi.Field[string](o, "name")
	if err != nil {
		return err
	}
	v := &httpapi.Validator{}
	p := &store.MailboxPassword{ID: store.NewID(store.PrefixPassword), MailboxID: m.ID, TeamID: c.team(), CreatedAt: s.now()}
	if !name.Set || name.Null {
		v.Add("name", httpapi.FieldRequired, "name is required")
	} else {
		p.Name = httpapi.CheckName(v, "name", name.V, 100)
	}
	if err := v.Err(); err != nil {
		return err
	}
	secret := store.NewSecret(store.SecretPrefixSending)
	p.Prefix = secret[:keyPrefixLen]
	p.Hash = store.HashSecret(secret)
	if err := s.st.CreateMailboxPassword(p); err != nil {
		// The mailbox was deleted since it was loaded.
		return storeErr(err, "mailbox")
	}
	s.log.Info("mailbox password created", "request_id", c.reqID, "mailbox", m.ID, "password", p.ID, "by", c.key.ID)
	c.ok(http.StatusCreated, createdPassword{passwordItem: passwordView(p), Password: secret})
	return nil
}

func (s *Server) listPasswords(c *call) error {
	id, ok := c.pathID(store.PrefixMailbox)
	if !ok {
		return httpapi.ErrNotFound("mailbox")
	}
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.MailboxPasswords(c.team(), id)
	if errors.Is(err, store.ErrNotFound) {
		return httpapi.ErrNotFound("mailbox")
	}
	if err != nil {
		return err
	}
	items, pag := paginate(all, func(p *store.MailboxPassword) string { return p.ID }, pg)
	out := make([]passwordItem, 0, len(items))
	for _, p := range items {
		out = append(out, passwordView(p))
	}
	c.list(out, pag)
	return nil
}

// revokePassword is DELETE /mailboxes/{id}/passwords/{password_id}. It
// takes effect on the password's next use (every SMTP transaction and
// HTTP send re-checks it). Revoking twice keeps the first time; the
// record stays listed as revoked, as API keys do.
func (s *Server) revokePassword(c *call) error {
	mid, ok := c.pathID(store.PrefixMailbox)
	pid := c.r.PathValue("password_id")
	if !ok {
		return httpapi.ErrNotFound("mailbox")
	}
	if !store.ValidID(store.PrefixPassword, pid) {
		return httpapi.ErrNotFound("mailbox password")
	}
	if _, err := s.st.TeamMailbox(c.team(), mid); errors.Is(err, store.ErrNotFound) {
		return httpapi.ErrNotFound("mailbox")
	} else if err != nil {
		return err
	}
	p, err := s.st.RevokeMailboxPassword(c.team(), mid, pid, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return httpapi.ErrNotFound("mailbox password")
	}
	if err != nil {
		return err
	}
	s.log.Info("mailbox password revoked", "request_id", c.reqID, "mailbox", mid, "password", pid, "by", c.key.ID)
	c.ok(http.StatusOK, passwordView(p))
	return nil
}
