package config

// Example returns a complete configuration file in TOML with every option
// set to its default value and a comment explaining it. Loading it gives
// exactly Default(); `wren config example` prints it as a starting point.
func Example() string {
	return exampleTOML
}

const exampleTOML = `# Wren configuration file (TOML).
#
# Every option is shown with its default value; delete the ones you do not
# change. Durations are written with a unit: "500ms", "30s", "10m", "1h".
# Check a file with:  wren config check --config /path/to/wren.toml

# The XMPP domain this server is responsible for: the part after the @ in
# your users' addresses (alice@example.org). Clients find the server through
# DNS SRV records or the A/AAAA record of this name.
domain = "localhost"

# Directory for the database (wren.db) and generated certificates (tls/).
# A relative path is relative to the directory the server is started from.
# Keep it on local disk and include it in your backups.
data_dir = "./data"

[log]
# How much to log: debug, info, warn or error.
level = "info"
# Log line format on standard error: text (human readable) or json (for log
# collectors).
format = "text"

[tls]
# Certificate chain (PEM, server certificate first) and private key (PEM)
# for the domain, for example from Let's Encrypt. Set both or neither.
# When both are empty, Wren generates a self-signed certificate in
# data_dir/tls/ on first start; clients will warn about it, so use it only
# for testing.
cert_file = ""
key_file = ""
# Or a directory holding the certificate, used when cert_file is empty:
# DIR/<domain>/fullchain.pem with DIR/<domain>/privkey.pem (point it at
# certbot's /etc/letsencrypt/live), or DIR/<domain>.crt with DIR/<domain>.key.
cert_dir = ""
# How often to look for a renewed certificate in these files and load it
# without a restart. "0s" turns it off; SIGHUP and "wren reload" always work.
watch_interval = "1m0s"

[tls.acme]
# Obtain and renew certificates automatically from Let's Encrypt (or
# another ACME service) for the domain and the push gateway's domain,
# instead of cert_file or cert_dir. The ACME service checks that it can
# reach this server on port 80 of each domain (HTTP-01 challenge).
enabled = false
# Contact address for expiry notices from the ACME service.
email = ""
# ACME directory address.
directory_url = "https://acme-v02.api.letsencrypt.org/directory"
# Where the HTTP-01 challenges are answered: port 80, or a port that port
# 80 is forwarded to.
http_listen = ":80"
# PEM file of certificates to trust for a private ACME service's HTTPS;
# empty uses the system's trusted certificates.
ca_file = ""

[c2s]
# Address (host:port) where clients connect and upgrade with STARTTLS.
# "0.0.0.0:5222" or "[::]:5222" accepts clients from the network; the
# default accepts only clients on this machine. An empty string disables
# this listener.
listen = "127.0.0.1:5222"
# Address (host:port) for direct TLS connections (XEP-0368), which some
# networks let through more easily. An empty string disables it.
direct_tls = "127.0.0.1:5223"
# Let clients connecting from this machine (a loopback address) log in
# without TLS. Useful for local tools and tests; leave it off otherwise.
allow_plaintext_loopback = false
# Largest stanza (message, presence, iq) in bytes that a logged-in client
# may send. Larger ones close the connection with a policy error.
max_stanza_bytes = 262144
# Largest element in bytes a client may send before it has logged in. Must
# fit a complete authentication exchange; must not exceed max_stanza_bytes.
max_preauth_bytes = 16384
# Deepest nesting of XML elements allowed inside one stanza.
max_depth = 32
# Largest number of attributes allowed on one XML element.
max_attrs = 64
# Connections that have not logged in and bound a resource within this
# time are closed.
auth_timeout = "30s"
# Logged-in connections from which nothing at all has been received (not
# even a whitespace keepalive) for this long are closed.
idle_timeout = "10m"
# How often the server sends a whitespace keepalive on a quiet connection,
# which keeps NAT and firewall state alive.
keepalive_interval = "60s"
# How many stanzas may wait to be sent to one session (including those sent
# but not yet acknowledged under stream management). A client that falls
# this far behind is considered stalled: its session ends and its messages
# go to offline storage.
send_queue = 1024
# Most simultaneous client connections from one IP address; further ones
# are refused with a policy-violation error. 0 means no limit.
max_connections_per_ip = 100
# Average stanzas per second one session may send, and how many it may
# send at once. A faster client is slowed down (its data waits in TCP),
# never disconnected or dropped. 0 turns the limit off.
stanza_rate = 500.0
stanza_burst = 1000
# Average bytes per second one connection may send; bursts up to one
# maximum stanza are allowed. A faster client is slowed down, not cut off.
# 0 turns the limit off.
byte_rate = 262144

[auth]
# PBKDF2 iteration count used when a password is set (SCRAM). Higher is
# slower to crack but costs more CPU at each login. At least 4096. Changing
# it affects passwords set afterwards only.
scram_iterations = 10000
# Delay added after a failed login from one address; it doubles with each
# further failure from that address, up to max_failure_delay. "0s" disables
# the delay.
failure_delay = "500ms"
max_failure_delay = "8s"
# Offer the PLAIN mechanism (password sent inside TLS) in addition to SCRAM,
# for clients that support nothing else. PLAIN is never offered without TLS.
allow_plain = true
# Offer SCRAM-SHA-1-PLUS and SCRAM-SHA-256-PLUS, which bind the login to the
# TLS connection (tls-exporter, tls-server-end-point) so that a stolen
# certificate cannot be used to intercept passwords. Turn it off only when a
# proxy in front of Wren terminates TLS.
channel_binding = true

[registration]
# Let anyone who can connect create an account (in-band registration,
# XEP-0077). Off by default; create accounts with 'wren user add' instead.
enabled = false
# Shortest password, in characters, accepted at registration and password
# change by users. Administrators using 'wren user' are only warned.
min_password_length = 8
# Most accounts one IP address may register within per_ip_window; further
# attempts get a resource-constraint error. 0 means no limit.
max_per_ip = 5
per_ip_window = "1h0m0s"

[offline]
# Most messages kept for one user while they are offline; further messages
# are returned to their senders with an error. 0 means no limit.
max_per_user = 1000

[archive]
# Keep each user's one-to-one messages on the server (Message Archive
# Management, XEP-0313) so that every device of the user, including a new
# one, can fetch the conversation history. Turning it off keeps nothing new;
# what is archived stays until retention removes it or the account is
# deleted.
enabled = true
# What is archived for users who have not chosen for themselves (clients
# can set it per user): "always", "roster" (only messages with contacts in
# the user's contact list) or "never".
default_mode = "always"
# Remove archived messages older than this. "0s" keeps them forever.
retention = "0s"
# Keep at most this many messages per user, removing the oldest first.
# 0 means no limit.
max_per_user = 0
# How often the two limits above are applied.
cleanup_interval = "1h0m0s"

[stream_management]
# Stream management (XEP-0198) lets a phone that loses its network resume
# its session without losing or repeating a message. While the connection
# is gone the session is kept ("hibernated"): stanzas for it are queued and
# contacts still see it online. If it is not resumed in time, queued
# messages go to offline storage and contacts see it go offline.
# How long to keep a session when the client does not ask for a time.
# "0s" disables resumption (acks still work).
resume_timeout = "5m0s"
# Longest time a client may ask for (mobile clients such as Monal ask for
# long ones so that a push notification can still find the session).
max_resume_timeout = "24h0m0s"
# How long the server waits for the client to answer an ack request before
# it treats the connection as dead and hibernates the session.
ack_timeout = "1m0s"

[metrics]
# Address (host:port) of the HTTP endpoint with Prometheus metrics at
# /metrics and a health check at /healthz (200 when the server and its
# database answer, 503 otherwise). It has no authentication: keep it on
# loopback or a private network. An empty string disables it.
listen = "127.0.0.1:9590"
# Also serve Go's runtime profiles (CPU, heap, goroutines) at
# /debug/pprof/, for "go tool pprof". Profiles show JIDs and message sizes
# in memory: enable only while diagnosing, on a trusted network.
profiling = false

[push]
# Push notifications (XEP-0357): a phone app that is asleep (no connection,
# or a hibernated stream management session) is woken through the app
# server its client registered, so that it can connect and fetch messages.
enabled = true
# Most devices one account may register; 0 means no limit.
max_registrations = 10
# Forget a registration after this many errors in a row from its app server
# (temporary "try later" errors do not count; a success resets the count).
max_errors = 5
# Put the sender's address and the message text into notifications. Off by
# default: the app server, and Apple or Google behind it, then learn neither.
include_sender = false
include_body = false
# Text sent instead of the body for messages worth an alert, when
# include_body is off. Empty sends none (the app shows its own text).
placeholder_body = "New message"
# Keep a push-enabled session whose connection died this long, until its
# first important push went out, so that an iOS app woken by the push can
# still resume it. "0s" uses the stream_management timeouts.
hibernate_timeout = "72h0m0s"
# How long to wait for the app server to answer a notification.
reply_timeout = "30s"
# After a temporary error ("try later", or no answer) the notification is
# sent again after this long, doubling with each try, up to 5 tries.
retry_interval = "30s"

[push_gateway]
# The built-in push gateway (app server): phone apps register their device
# with it and it forwards wake-ups to Apple (APNs) and Google (FCM), with
# retries and a delivery record per push ("wren push log").
enabled = true
# Address of the gateway; empty means "push." followed by the domain above.
# Other servers' users reach it over federation, so give it DNS records if
# they should.
domain = ""
# Pushes waiting to be sent, at most. When full, notifications are answered
# with a "try later" error.
queue_size = 10000
# Pushes sent at the same time.
workers = 8
# Attempts per push before it is given up.
max_attempts = 6
# Wait between attempts: doubling from retry_base up to retry_max, with
# jitter; a provider's Retry-After wins when longer.
retry_base = "1s"
retry_max = "5m0s"
# Deadline of one call to Apple or Google.
request_timeout = "10s"
# How long delivery records are kept.
record_retention = "720h0m0s"

[push_gateway.apns]
# Apple Push Notification service. Token authentication: the .p8 key from
# your Apple developer account with its key id and your team id. Or a push
# certificate (.p12 or PEM) in cert_file. Without either, iOS devices
# cannot register.
key_file = ""
key_id = ""
team_id = ""
cert_file = ""
cert_password = ""
# Your app's bundle id, for devices that register without naming one.
topic = ""
# "production" or "development" (Apple's sandbox), for devices that
# register without saying.
environment = "production"
# Send to this address instead of Apple's (for testing only).
endpoint = ""
# PEM certificates to trust for that address (for testing only).
ca_file = ""

[push_gateway.fcm]
# Firebase Cloud Messaging: the service account JSON key of your Firebase
# project. Without it, Android devices cannot register.
credentials_file = ""
# Overrides the project named in the credentials file.
project_id = ""
# Send to this address instead of Google's (for testing only).
endpoint = ""
# PEM certificates to trust for that address (for testing only).
ca_file = ""

[pep]
# Personal eventing (XEP-0163): every account's own publish-subscribe
# service, which clients use for encryption keys (OMEMO), avatars,
# bookmarks and nicknames.
# Most nodes one account may create.
max_nodes = 1000
# Most items kept in one node; a client asking for more (or "max") gets this.
max_items = 256

[blocking]
# Blocking (XEP-0191): most entries in one user's blocklist.
max_items = 1000

[s2s]
# Federation: your users talk to users of other XMPP servers (Prosody,
# ejabberd, ...) and theirs to yours. It is off until you set listen: it
# needs a real domain with DNS records (an A/AAAA record, or SRV records
# _xmpp-server._tcp and _xmpps-server._tcp) and, ideally, a certificate
# that other servers trust (for example from Let's Encrypt).
# Address (host:port) where other servers connect and upgrade with
# STARTTLS; "0.0.0.0:5269" or "[::]:5269" to federate. Empty: off, and
# messages to other domains are returned with remote-server-not-found.
listen = ""
# Address for direct TLS connections from other servers (XEP-0368, SRV
# _xmpps-server._tcp). An empty string disables it.
direct_tls = ""
# Never exchange stanzas with another server over an unencrypted stream.
require_tls = true
# Accept only servers whose certificate is valid for their domain and
# signed by a trusted authority (authenticated with SASL EXTERNAL). When
# false, servers with self-signed certificates are verified with Server
# Dialback, a DNS-based check, instead.
require_valid_certificates = false
# Extra certificate authorities (PEM file) trusted for other servers'
# certificates, in addition to the system's.
ca_file = ""
# Bidirectional streams (XEP-0288): with servers that support them, a
# stream opened by either side carries messages both ways, so two servers
# need one connection instead of two.
bidi = true
# Longest wait for one connection attempt to one address of another server.
connect_timeout = "10s"
# Longest time to set up a stream with another server (DNS, connections,
# TLS, authentication). Messages waiting for it are then returned to their
# senders with remote-server-timeout.
negotiate_timeout = "30s"
# Close a stream with another server after this long without a stanza; it
# is opened again when needed.
idle_timeout = "10m0s"
# Most stanzas waiting for one remote domain (while its stream is set up or
# when it is slow); further ones are returned with resource-constraint.
send_queue = 1000
# When not empty, the only domains this server federates with.
allow = []
# Domains this server never federates with.
deny = []
# Address (host:port) where external components (XEP-0114, configured
# below) connect. Opened only when at least one component is configured.
component_listen = "127.0.0.1:5347"

[s2s.addresses]
# Connect to these addresses for these domains instead of looking them up
# in DNS (split-horizon networks, tests). For example:
# "chat.example.com" = "192.0.2.7:5269"

[component]
# External components (XEP-0114): separate services, such as gateways or
# bots, that connect to component_listen and receive every stanza for
# their own domain. One table per component, for example:
# [component."gateway.example.org"]
# secret = "a long random string shared with the component"
`
