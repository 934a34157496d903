package mailapi

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// CheckAccount validates what both connected-account providers are built
// from and returns the API base URL normalised (defaultBase when empty,
// no trailing slash). kind prefixes the errors ("gmail", "outlook").
func CheckAccount(kind string, ts oauth2.TokenSource, email, base, defaultBase string) (string, error) {
	if ts == nil {
		return "", errors.New(kind + ": token source is required")
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return "", fmt.Errorf("%s: invalid account address %q", kind, email)
	}
	if base == "" {
		base = defaultBase
	}
	base = strings.TrimRight(base, "/")
	if u, err := url.Parse(base); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%s: invalid API base URL %q", kind, base)
	}
	return base, nil
}
