package storage

// PushGateway stores the push gateway's devices and delivery records.
type PushGateway interface{}
