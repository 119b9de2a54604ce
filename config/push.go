package config

// Push configures push notifications on the server side (XEP-0357): when
// a user's device has no live session, the server wakes it through the app
// server the client registered.
type Push struct {
	// Enabled lets clients register for push notifications. On by default.
	Enabled bool `toml:"enabled"`
	// MaxRegistrations caps the registrations (devices) per account; 0
	// means no cap.
	MaxRegistrations int `toml:"max_registrations"`
	// MaxErrors disables a registration after this many consecutive
	// non-temporary errors from its app server (a success resets the count).
	MaxErrors int `toml:"max_errors"`
	// IncludeSender and IncludeBody put the sender's address and the
	// message text into the notification's summary. Off by default: the
	// app server (and Apple or Google behind it) learns neither.
	IncludeSender bool `toml:"include_sender"`
	IncludeBody   bool `toml:"include_body"`
	// PlaceholderBody is the body sent for important stanzas when
	// IncludeBody is off, so that the app can show an alert; empty sends
	// none.
	PlaceholderBody string `toml:"placeholder_body"`
	// HibernateTimeout is how long a push-enabled session whose connection
	// died is kept for resumption, until its first important push was
	// sent (then the normal stream_management timeouts apply): an iOS app
	// woken by the push still finds its session. 0 keeps the normal timeouts.
	HibernateTimeout Duration `toml:"hibernate_timeout"`
	// ReplyTimeout is how long the server waits for the app server's answer
	// to a notification before counting it as a temporary error.
	ReplyTimeout Duration `toml:"reply_timeout"`
	// RetryInterval is how long after a temporary error (a "wait" answer
	// or none) the notification is sent again; it doubles with each try,
	// up to 5 tries.
	RetryInterval Duration `toml:"retry_interval"`
}

// PushGateway configures the built-in push gateway (app server): it takes
// device registrations from clients by ad-hoc command and forwards
// notifications to Apple (APNs) and Google (FCM).
type PushGateway struct {
	// Enabled runs the gateway at Domain. On by default; without APNs or
	// FCM credentials it accepts no device registrations for that provider.
	Enabled bool `toml:"enabled"`
	// Domain is the gateway's address; empty means "push." followed by the
	// server's domain.
	Domain string `toml:"domain"`
	// QueueSize caps the pushes waiting to be sent; when full, new
	// notifications are answered with a temporary error.
	QueueSize int `toml:"queue_size"`
	// Workers is the number of pushes sent at the same time.
	Workers int `toml:"workers"`
	// MaxAttempts is how often a push is tried before it is given up.
	MaxAttempts int `toml:"max_attempts"`
	// RetryBase and RetryMax bound the exponential backoff (with jitter)
	// between attempts; a provider's Retry-After wins when longer.
	RetryBase Duration `toml:"retry_base"`
	RetryMax  Duration `toml:"retry_max"`
	// RequestTimeout is the deadline of one call to APNs or FCM.
	RequestTimeout Duration `toml:"request_timeout"`
	// RecordRetention is how long delivery records are kept.
	RecordRetention Duration `toml:"record_retention"`
	// APNs and FCM hold the provider credentials.
	APNs APNs `toml:"apns"`
	FCM  FCM  `toml:"fcm"`
}

// APNs configures the Apple Push Notification service. Use token
// authentication (KeyFile, KeyID, TeamID) or a certificate (CertFile).
type APNs struct {
	// KeyFile is the .p8 signing key from the Apple developer account,
	// KeyID its key id and TeamID the developer team id.
	KeyFile string `toml:"key_file"`
	KeyID   string `toml:"key_id"`
	TeamID  string `toml:"team_id"`
	// CertFile is a .p12 (or PEM) push certificate, CertPassword its password.
	CertFile     string `toml:"cert_file"`
	CertPassword string `toml:"cert_password"`
	// Topic is the app's bundle id, used when a device registered without one.
	Topic string `toml:"topic"`
	// Environment is "production" or "development" (the sandbox), used
	// when a device registered without saying.
	Environment string `toml:"environment"`
	// Endpoint replaces Apple's address (for testing against a local
	// server); empty uses Apple's.
	Endpoint string `toml:"endpoint"`
	// CAFile is a PEM file of certificates trusted for Endpoint's TLS
	// (testing); empty uses the system's.
	CAFile string `toml:"ca_file"`
}

// FCM configures Firebase Cloud Messaging.
type FCM struct {
	// CredentialsFile is the service account JSON key of the Firebase
	// project; ProjectID overrides the project named in it.
	CredentialsFile string `toml:"credentials_file"`
	ProjectID       string `toml:"project_id"`
	// Endpoint replaces Google's address (for testing against a local
	// server); empty uses Google's.
	Endpoint string `toml:"endpoint"`
	// CAFile is a PEM file of certificates trusted for Endpoint's TLS
	// (testing); empty uses the system's.
	CAFile string `toml:"ca_file"`
}

// Configured reports whether APNs credentials are set.
func (a APNs) Configured() bool { return a.KeyFile != "" || a.CertFile != "" }

// Configured reports whether FCM credentials are set.
func (f FCM) Configured() bool { return f.CredentialsFile != "" }

// PEP configures personal eventing (XEP-0163): the per-account publish-
// subscribe service that carries OMEMO keys, avatars, bookmarks and nicknames.
type PEP struct {
	// MaxNodes caps the nodes of one account.
	MaxNodes int `toml:"max_nodes"`
	// MaxItems caps the items kept in one node (a node asking for more, or
	// for "max", gets this many).
	MaxItems int `toml:"max_items"`
}

// Blocking configures blocking (XEP-0191).
type Blocking struct {
	// MaxItems caps the entries of one user's blocklist.
	MaxItems int `toml:"max_items"`
}
