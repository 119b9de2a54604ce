package storage

// Blocklists stores accounts' blocking lists (XEP-0191).
type Blocklists interface{}
