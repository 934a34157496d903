package main

import (
	"net/netip"

	"github.com/smtpmux/smtpmux/internal/proxied"
)

// proxySources are the trusted load balancers of each listener kind
// ([smtp], [http] and [bounces] proxy_protocol_from), parsed. A listener
// with none takes no PROXY header (the default): its clients are who
// they connect from. See internal/proxied and docs/cluster.md.
type proxySources struct {
	smtp, http, bounces []netip.Prefix
}

// validateProxy parses the three proxy_protocol_from lists; an entry
// that is not an address or a canonical CIDR prefix, or one that trusts
// every address, fails naming its key.
func (c *config) validateProxy(fc *fileConfig) error {
	for _, k := range []struct {
		key  string
		list []string
		dst  *[]netip.Prefix
	}{
		{"smtp.proxy_protocol_from", fc.SMTP.ProxyProtocolFrom, &c.proxyFrom.smtp},
		{"http.proxy_protocol_from", fc.HTTP.ProxyProtocolFrom, &c.proxyFrom.http},
		{"bounces.proxy_protocol_from", fc.Bounces.ProxyProtocolFrom, &c.proxyFrom.bounces},
	} {
		p, err := proxied.ParseSources(k.list)
		if err != nil {
			return &configError{k.key, err.Error()}
		}
		*k.dst = p
	}
	return nil
}
