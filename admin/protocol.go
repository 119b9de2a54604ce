// Package admin is the local administration channel of a running Wren
// server: a Unix socket in the data directory, readable and writable by
// the server's own user only, that speaks JSON lines. The wren command
// uses it for status, session listing and kicking, reloads, user
// management and the push gateway's records while the server runs.
//
// Each request is one line holding a JSON object {"command": ..., "args":
// {...}}; the server answers each with one line {"ok": true, "result":
// ...} or {"ok": false, "code": ..., "error": ...}. A connection may carry
// any number of requests, one after the other.
package admin

import (
	"context"
	"encoding/json"
	"time"

	"wren.im/wren/storage"
)

// SocketName is the name of the socket file in the data directory.
const SocketName = "admin.sock"

// Commands understood by the server.
const (
	CmdStatus      = "status"
	CmdSessionList = "session.list"
	CmdSessionKick = "session.kick"
	CmdUserExists  = "user.exists"
	CmdUserAdd     = "user.add"
	CmdUserPasswd  = "user.passwd"
	CmdUserDel     = "user.del"
	CmdUserList    = "user.list"
	CmdReload      = "reload"
	// The push gateway's delivery records, devices and test pushes
	// (push.go).
	CmdPushLog     = "push.log"
	CmdPushDevices = "push.devices"
	CmdPushTest    = "push.test"
)

// Request is one line sent to the socket.
type Request struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// Response is the line that answers a request.
type Response struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	// Code classifies a failure (see the Err variables); Error explains it.
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Error is a failed request as the client sees it. Match the kind with
// errors.Is against ErrNotFound, ErrExists, ErrBadRequest and
// ErrUnknownCommand.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	switch e.Code {
	case "not_found":
		return "not found"
	case "exists":
		return "already exists"
	case "bad_request":
		return "bad request"
	case "unknown_command":
		return "unknown command"
	}
	return "failed"
}

// Is reports whether target is the sentinel of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Kinds of failure. A backend returns them (wrapped or not) to choose the
// code; storage.ErrNotFound and storage.ErrExists map to the first two.
var (
	ErrNotFound       = &Error{Code: "not_found"}
	ErrExists         = &Error{Code: "exists"}
	ErrBadRequest     = &Error{Code: "bad_request"}
	ErrUnknownCommand = &Error{Code: "unknown_command"}
	errFailed         = &Error{Code: "failed"}
)

// Backend carries out the commands; the server package implements it.
// Users are localparts on the server's domain.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	// Sessions lists the bound sessions of user, or of everyone for "".
	Sessions(ctx context.Context, user string) ([]Session, error)
	// Kick ends the session of a full JID, or every session of a bare
	// JID, with a policy-violation stream error carrying reason. It
	// returns the JIDs of the sessions ended (ErrNotFound when none).
	Kick(ctx context.Context, jid, reason string) ([]string, error)
	UserExists(ctx context.Context, user string) (bool, error)
	AddUser(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error
	SetPassword(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error
	// DeleteUser deletes the account with its data and ends its sessions,
	// returning their JIDs.
	DeleteUser(ctx context.Context, user string) ([]string, error)
	ListUsers(ctx context.Context) ([]string, error)
	// Reload re-reads the configuration and the certificate.
	Reload(ctx context.Context) (ReloadResult, error)

	// The push gateway: owner is a user name of this server or a bare
	// JID. Each fails with ErrPushGatewayDisabled when the server runs
	// without the gateway.

	// PushLog returns the delivery records matching f, newest first.
	PushLog(ctx context.Context, f PushLogFilter) ([]PushRecord, error)
	// PushDevices lists the devices owner registered, oldest first.
	PushDevices(ctx context.Context, owner string) (PushDeviceList, error)
	// PushTest sends a test push to each device of owner and waits
	// (bounded) for the outcome of each first attempt.
	PushTest(ctx context.Context, owner string) (PushTestReport, error)
}

// Status describes the running server.
type Status struct {
	Version string    `json:"version"`
	Domain  string    `json:"domain"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// UptimeSeconds is the time since Started when the status was taken.
	UptimeSeconds float64     `json:"uptime_seconds"`
	Connections   Connections `json:"connections"`
	// Sessions counts bound client sessions, hibernated ones included.
	Sessions int `json:"sessions"`
	// Hibernated counts sessions whose connection is gone and that wait
	// for a stream management resume.
	Hibernated int `json:"hibernated"`
	// Queued is the number of stanzas waiting in session queues (sent
	// but not yet acknowledged ones included); LargestQueue is the
	// longest single queue.
	Queued       int        `json:"queued"`
	LargestQueue int        `json:"largest_queue"`
	Listeners    []Listener `json:"listeners"`
}

// Connections counts open network connections.
type Connections struct {
	C2S int `json:"c2s"`
	S2S int `json:"s2s"`
}

// Listener is an address the server accepts connections on.
type Listener struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
}

// Session describes one bound client session.
type Session struct {
	JID    string `json:"jid"`
	Remote string `json:"remote"`
	// State is "active" or "hibernated".
	State     string    `json:"state"`
	Bound     time.Time `json:"bound"`
	Secure    bool      `json:"secure"`
	DirectTLS bool      `json:"direct_tls"`
	Resumable bool      `json:"resumable"`
	Queued    int       `json:"queued"`
	Available bool      `json:"available"`
	Priority  int       `json:"priority"`
}

// ReloadResult reports what a reload changed.
type ReloadResult struct {
	// Config is where the configuration was read from; empty when the
	// server was started without a way to re-read it (only the
	// certificate was reloaded).
	Config string `json:"config,omitempty"`
	// Certificate is the certificate served from now on.
	Certificate        CertInfo `json:"certificate"`
	CertificateChanged bool     `json:"certificate_changed"`
	// Applied lists changed options that took effect.
	Applied []Change `json:"applied"`
	// NeedRestart lists changed options that take effect only at the
	// next start.
	NeedRestart []Change `json:"need_restart"`
}

// CertInfo describes a certificate.
type CertInfo struct {
	Subject  string    `json:"subject"`
	Names    []string  `json:"names"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	// Source is the file it was loaded from.
	Source string `json:"source"`
}

// Change is an option whose value changed.
type Change struct {
	Option string `json:"option"`
	Old    string `json:"old"`
	New    string `json:"new"`
}

// Argument and result shapes of the commands.
type (
	userArgs struct {
		User   string                   `json:"user"`
		SHA1   *storage.ScramCredential `json:"sha1,omitempty"`
		SHA256 *storage.ScramCredential `json:"sha256,omitempty"`
	}
	sessionListArgs struct {
		User string `json:"user,omitempty"`
	}
	kickArgs struct {
		JID    string `json:"jid"`
		Reason string `json:"reason,omitempty"`
	}
	endedResult struct {
		Ended []string `json:"ended"`
	}
	existsResult struct {
		Exists bool `json:"exists"`
	}
)
