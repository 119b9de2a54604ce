package storage

// PEP stores the personal eventing (XEP-0163) nodes and items of accounts.
type PEP interface{}
