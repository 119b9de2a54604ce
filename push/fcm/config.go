package fcm

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Config configures the FCM sender.
type Config struct {
	// CredentialsFile is the path of the Firebase project's service-account
	// key (JSON), from the Firebase console: Project settings → Service
	// accounts → Generate new private key.
	CredentialsFile string
	// ProjectID is the Firebase project id; the credentials' project_id
	// when empty.
	ProjectID string

	// Endpoint, for tests, replaces https://fcm.googleapis.com/v1; "/v1"
	// is appended when the URL has no path.
	Endpoint string
	// NoAuth, for tests with Endpoint, sends without credentials.
	NoAuth bool
	// RootCAs, for tests, are the roots that the servers' certificates
	// (FCM's and the OAuth token endpoint's) must chain to; the system
	// roots when nil.
	RootCAs *x509.CertPool
}

// serviceAccount is the part of a service-account key file that the
// sender checks.
type serviceAccount struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	PrivateKey  string `json:"private_key"`
	ClientEmail string `json:"client_email"`
	TokenURI    string `json:"token_uri"`
}

// settings is a validated Config.
type settings struct {
	projectID string
	endpoint  string // "" for FCM's
	credFile  string // "" with NoAuth
}

// load validates c and reads its credentials file. Every problem found is
// reported, joined.
func (c Config) load() (settings, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("fcm: "+format, args...))
	}
	st := settings{projectID: c.ProjectID, credFile: c.CredentialsFile}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" {
			bad("Endpoint %q must be an https:// URL", c.Endpoint)
		} else {
			st.endpoint = strings.TrimSuffix(c.Endpoint, "/")
			if u.Path == "" || u.Path == "/" {
				st.endpoint += "/v1"
			}
		}
	}
	switch {
	case c.NoAuth && c.Endpoint == "":
		bad("NoAuth is only for a test Endpoint; FCM needs credentials: set CredentialsFile")
	case c.NoAuth && c.CredentialsFile != "":
		bad("NoAuth and CredentialsFile are both set; keep one of them")
	case !c.NoAuth && c.CredentialsFile == "":
		bad("CredentialsFile is required: the service-account key (JSON) from the Firebase console, Project settings → Service accounts → Generate new private key")
	case !c.NoAuth:
		sa, err := readServiceAccount(c.CredentialsFile)
		if err != nil {
			errs = append(errs, err)
		} else if st.projectID == "" {
			st.projectID = sa.ProjectID
		}
	}
	switch {
	case st.projectID == "" && len(errs) == 0:
		bad("ProjectID is required: the Firebase project id (Project settings → General), or use a CredentialsFile that has a project_id")
	case st.projectID != "" && !validProjectID(st.projectID):
		bad("ProjectID %q is not a project id: lowercase letters, digits and hyphens, as in Project settings → General", st.projectID)
	}
	if len(errs) > 0 {
		return settings{}, errors.Join(errs...)
	}
	return st, nil
}

// readServiceAccount reads and checks a service-account key file, as
// Google asks of credentials accepted from a configuration file.
func readServiceAccount(path string) (serviceAccount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return serviceAccount{}, fmt.Errorf("fcm: CredentialsFile: cannot read the service-account key: %w", err)
	}
	var sa serviceAccount
	if err := json.Unmarshal(data, &sa); err != nil {
		return serviceAccount{}, fmt.Errorf("fcm: CredentialsFile %q is not JSON (%v): use the key file from the Firebase console, unmodified", path, err)
	}
	if sa.Type != "service_account" {
		return serviceAccount{}, fmt.Errorf("fcm: CredentialsFile %q holds %q credentials, not a service-account key: generate one in the Firebase console, Project settings → Service accounts", path, sa.Type)
	}
	var missing []string
	if sa.ClientEmail == "" {
		missing = append(missing, "client_email")
	}
	if sa.PrivateKey == "" {
		missing = append(missing, "private_key")
	}
	if len(missing) > 0 {
		return serviceAccount{}, fmt.Errorf("fcm: CredentialsFile %q lacks %s: generate a new key in the Firebase console", path, strings.Join(missing, " and "))
	}
	if err := checkRSAKey(sa.PrivateKey); err != nil {
		return serviceAccount{}, fmt.Errorf("fcm: CredentialsFile %q: private_key %v: generate a new key in the Firebase console", path, err)
	}
	if sa.TokenURI != "" {
		if u, err := url.Parse(sa.TokenURI); err != nil || u.Scheme != "https" || u.Host == "" {
			return serviceAccount{}, fmt.Errorf("fcm: CredentialsFile %q: token_uri %q is not an https:// URL", path, sa.TokenURI)
		}
	}
	return sa, nil
}

func checkRSAKey(s string) error {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return errors.New("is not PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 == nil {
			return nil
		}
		return fmt.Errorf("cannot be parsed: %w", err)
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("is a %T, not an RSA key", key)
	}
	return nil
}

// validProjectID accepts Google Cloud project ids: lowercase letters,
// digits and hyphens (older projects may also have a domain prefix
// "example.com:").
func validProjectID(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == ':') {
			return false
		}
	}
	return true
}
