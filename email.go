package dspool

import (
	"net/mail"
	"strings"
)

// NormalizeEmail returns an email address in the form the store keeps (lower
// case, no display name), or an EInvalid error naming field. "" stays "".
func NormalizeEmail(field, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if err := ValidateText(field, s, 254); err != nil {
		return "", err
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || len(s) > 254 || strings.ContainsAny(s, " \t\r\n") {
		return "", Invalid(field, "%s is not an email address: give it alone, e.g. alice@example.com", quote(s))
	}
	return strings.ToLower(s), nil
}

// EmailDomain returns the part of a normalized address after its last '@'.
func EmailDomain(email string) string {
	return email[strings.LastIndexByte(email, '@')+1:]
}
