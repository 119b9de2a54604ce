package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
	"mellium.im/xmpp/jid"
)

// normalizeUsername prepares and enforces a username like the localpart of
// an XMPP address (RFC 7622 §3.3): PRECIS UsernameCaseMapped, non-empty, at
// most 1023 bytes, none of the characters RFC 7622 forbids in localparts.
func normalizeUsername(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", errors.New("username is not valid UTF-8")
	}
	u, err := precis.UsernameCaseMapped.String(raw)
	if err != nil {
		return "", err
	}
	switch {
	case u == "":
		return "", errors.New("empty username")
	case len(u) > 1023:
		return "", errors.New("username longer than 1023 bytes")
	case strings.ContainsAny(u, `"&'/:<>@`):
		return "", errors.New("username contains a character not allowed in a localpart")
	}
	return u, nil
}

// checkAuthzid accepts an authorization identity only if it is the bare JID
// of the authenticated user on the server's domain.
func (e *Exchange) checkAuthzid(authzid, username string) error {
	j, err := jid.Parse(authzid)
	if err != nil || e.domain == "" ||
		j.Resourcepart() != "" || j.Localpart() != username || j.Domainpart() != e.domain {
		return fmt.Errorf("%w: it must be empty or the user's own bare JID", ErrInvalidAuthzid)
	}
	return nil
}
