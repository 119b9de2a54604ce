package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"wren.im/wren/storage"
)

// ErrNotRunning means no server answers on the socket: the file does not
// exist, or nothing listens on it (a server that crashed).
var ErrNotRunning = errors.New("the Wren server is not running")

// defaultTimeout bounds a request when the context has no deadline.
const defaultTimeout = 30 * time.Second

// Client talks to a running server over its admin socket. It is not safe
// for concurrent use.
type Client struct {
	path string
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the socket at path. It fails with an error wrapping
// ErrNotRunning when no server answers there.
func Dial(ctx context.Context, path string) (*Client, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket %s: %w (%d bytes, at most %d); the server cannot offer it either: use a shorter data_dir", path, ErrPathTooLong, len(path), maxSocketPath)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (nothing answers on %s)", ErrNotRunning, path)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot connect to the admin socket %s: permission denied; run the command as the user the server runs as (for example: sudo -u wren wren ...)", path)
		}
		return nil, fmt.Errorf("cannot connect to the admin socket %s: %w", path, err)
	}
	return &Client{path: path, conn: conn, r: bufio.NewReaderSize(conn, 4096)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call sends one request and decodes its result into result (unless nil).
// A failure reported by the server is an *Error.
func (c *Client) Call(ctx context.Context, command string, args, result any) error {
	req := Request{Command: command}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("admin %s: encoding the arguments: %w", command, err)
		}
		req.Args = raw
	}
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w", command, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultTimeout)
	}
	c.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.conn.Write(append(line, '\n')); err != nil {
		return c.ioError(ctx, command, err)
	}
	answer, err := c.r.ReadBytes('\n')
	if err != nil {
		return c.ioError(ctx, command, err)
	}
	var resp Response
	if err := json.Unmarshal(answer, &resp); err != nil {
		return fmt.Errorf("admin %s: the server's answer is not valid: %w", command, err)
	}
	if !resp.OK {
		return &Error{Code: resp.Code, Message: resp.Error}
	}
	if result != nil {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("admin %s: decoding the result: %w", command, err)
		}
	}
	return nil
}

func (c *Client) ioError(ctx context.Context, command string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("admin %s: %w", command, ctx.Err())
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is the context's, and may fire a
		// moment before the context notices.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return fmt.Errorf("admin %s: %w", command, context.DeadlineExceeded)
		}
		return fmt.Errorf("admin %s: the server did not answer within %s (is it overloaded or stuck?)", command, defaultTimeout)
	}
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("admin %s: the server closed the connection (is it shutting down?): %w", command, err)
	}
	return fmt.Errorf("admin %s on %s: %w", command, c.path, err)
}

// Status returns the server's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.Call(ctx, CmdStatus, nil, &st)
	return st, err
}

// Sessions lists the bound sessions of user (a localpart), or all for "".
func (c *Client) Sessions(ctx context.Context, user string) ([]Session, error) {
	var list []Session
	err := c.Call(ctx, CmdSessionList, sessionListArgs{User: user}, &list)
	return list, err
}

// Kick ends the session of a full JID or all sessions of a bare JID and
// returns the JIDs ended.
func (c *Client) Kick(ctx context.Context, jid, reason string) ([]string, error) {
	var r endedResult
	err := c.Call(ctx, CmdSessionKick, kickArgs{JID: jid, Reason: reason}, &r)
	return r.Ended, err
}

// UserExists reports whether the account exists.
func (c *Client) UserExists(ctx context.Context, user string) (bool, error) {
	var r existsResult
	err := c.Call(ctx, CmdUserExists, userArgs{User: user}, &r)
	return r.Exists, err
}

// AddUser creates an account with the given SCRAM credentials (derived
// by the caller, so that no password crosses the socket).
func (c *Client) AddUser(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error {
	return c.Call(ctx, CmdUserAdd, userArgs{User: user, SHA1: &sha1, SHA256: &sha256}, nil)
}

// SetPassword replaces the credentials of an account.
func (c *Client) SetPassword(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error {
	return c.Call(ctx, CmdUserPasswd, userArgs{User: user, SHA1: &sha1, SHA256: &sha256}, nil)
}

// DeleteUser deletes an account and returns the JIDs of the sessions
// that were ended.
func (c *Client) DeleteUser(ctx context.Context, user string) ([]string, error) {
	var r endedResult
	err := c.Call(ctx, CmdUserDel, userArgs{User: user}, &r)
	return r.Ended, err
}

// ListUsers returns the localparts of every account.
func (c *Client) ListUsers(ctx context.Context) ([]string, error) {
	var users []string
	err := c.Call(ctx, CmdUserList, nil, &users)
	return users, err
}

// Reload asks the server to re-read its configuration and certificate.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var r ReloadResult
	err := c.Call(ctx, CmdReload, nil, &r)
	return r, err
}

// PushLog returns the push gateway's delivery records matching q, newest
// first.
func (c *Client) PushLog(ctx context.Context, q PushLogQuery) ([]PushRecord, error) {
	var recs []PushRecord
	err := c.Call(ctx, CmdPushLog, q, &recs)
	return recs, err
}

// PushDevices lists the devices an account (a user name or a bare JID)
// registered with the push gateway, without their secrets.
func (c *Client) PushDevices(ctx context.Context, owner string) (PushDeviceList, error) {
	var list PushDeviceList
	err := c.Call(ctx, CmdPushDevices, pushOwnerArgs{Owner: owner}, &list)
	return list, err
}

// PushTest sends a test push to each device of an account (a user name or
// a bare JID) and returns the outcome of each. The server waits for the
// providers up to the gateway's request_timeout and a few seconds more:
// give ctx a deadline beyond that.
func (c *Client) PushTest(ctx context.Context, owner string) (PushTestReport, error) {
	var r PushTestReport
	err := c.Call(ctx, CmdPushTest, pushOwnerArgs{Owner: owner}, &r)
	return r, err
}
