package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"wren.im/wren/storage"
)

const (
	// maxLine bounds one request line.
	maxLine = 1 << 20
	// idleTimeout closes a connection that sends no request for this long.
	idleTimeout = 2 * time.Minute
	// maxSocketPath is the longest path a Unix socket can have on Linux.
	maxSocketPath = 107
)

// ErrRunning means another server answers on the socket: two servers must
// not share one data directory.
var ErrRunning = errors.New("another Wren server is running with this data directory")

// ErrPathTooLong means the socket path does not fit in a Unix socket address.
var ErrPathTooLong = errors.New("the path is too long for a Unix socket")

// Server serves the admin socket.
type Server struct {
	path string
	ln   *net.UnixListener
	log  *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Listen creates the socket at path with mode 0600. A socket file left
// behind by a server that crashed is removed; if a server answers on it,
// Listen fails with ErrRunning. Anything else at path is left alone and
// reported.
func Listen(path string, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket %s: %w (%d bytes, at most %d); use a shorter data_dir", path, ErrPathTooLong, len(path), maxSocketPath)
	}
	if err := removeStale(path, logger); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return &Server{path: path, ln: ln, log: logger.With("component", "admin"), conns: map[net.Conn]struct{}{}}, nil
}

// removeStale removes a socket file nobody answers on.
func removeStale(path string, logger *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("admin socket %s: the path exists and is not a socket; move it away", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("admin socket %s answers: %w; stop it first ('wren status' shows it)", path, ErrRunning)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket %s: cannot tell whether a server is running: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket %s: removing the stale socket: %w", path, err)
	}
	logger.Info("removed a stale admin socket left by a server that did not shut down cleanly", "path", path)
	return nil
}

// Path returns the socket path.
func (s *Server) Path() string { return s.path }

// Close closes the listener without serving (when start-up fails after
// Listen). It removes the socket file.
func (s *Server) Close() error { return s.ln.Close() }

// Serve answers requests with b until ctx is cancelled, then closes the
// listener (removing the socket file) and every connection, and returns
// once every request in progress has finished.
func (s *Server) Serve(ctx context.Context, b Backend) error {
	stop := context.AfterFunc(ctx, func() {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()
	defer s.wg.Wait()
	var delay time.Duration
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting an admin connection failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		if err := checkPeer(conn); err != nil {
			s.log.Warn("refused an admin connection", "err", err)
			conn.Close()
			continue
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, conn, b)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		}()
	}
}

// serveConn answers the requests of one connection.
func (s *Server) serveConn(ctx context.Context, conn net.Conn, b Backend) {
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	enc := json.NewEncoder(conn)
	for {
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		if !sc.Scan() {
			if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				s.log.Debug("admin connection ended", "err", err)
			}
			return
		}
		var req Request
		var resp Response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp = failed(fmt.Errorf("%w: the request is not a JSON object: %v", ErrBadRequest, err))
		} else {
			resp = s.handle(ctx, b, req)
		}
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// handle runs one request.
func (s *Server) handle(ctx context.Context, b Backend, req Request) Response {
	result, err := s.dispatch(ctx, b, req)
	if err != nil {
		resp := failed(err)
		s.log.Info("admin command failed", "command", req.Command, "code", resp.Code, "err", resp.Error)
		return resp
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return failed(fmt.Errorf("encoding the result: %w", err))
	}
	return Response{OK: true, Result: raw}
}

func (s *Server) dispatch(ctx context.Context, b Backend, req Request) (any, error) {
	decode := func(v any) error {
		if len(req.Args) == 0 {
			return nil
		}
		if err := json.Unmarshal(req.Args, v); err != nil {
			return fmt.Errorf("%w: arguments of %s: %v", ErrBadRequest, req.Command, err)
		}
		return nil
	}
	switch req.Command {
	case CmdStatus:
		return b.Status(ctx)
	case CmdSessionList:
		var a sessionListArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		list, err := b.Sessions(ctx, a.User)
		if list == nil {
			list = []Session{}
		}
		return list, err
	case CmdSessionKick:
		var a kickArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		s.log.Info("admin: kicking sessions", "jid", a.JID, "reason", a.Reason)
		ended, err := b.Kick(ctx, a.JID, a.Reason)
		return endedResult{Ended: nonNil(ended)}, err
	case CmdUserExists:
		var a userArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		ok, err := b.UserExists(ctx, a.User)
		return existsResult{Exists: ok}, err
	case CmdUserAdd, CmdUserPasswd:
		var a userArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		if a.SHA1 == nil || a.SHA256 == nil {
			return nil, fmt.Errorf("%w: %s needs the sha1 and sha256 credentials", ErrBadRequest, req.Command)
		}
		if req.Command == CmdUserAdd {
			s.log.Info("admin: creating user", "user", a.User)
			return struct{}{}, b.AddUser(ctx, a.User, *a.SHA1, *a.SHA256)
		}
		s.log.Info("admin: changing password", "user", a.User)
		return struct{}{}, b.SetPassword(ctx, a.User, *a.SHA1, *a.SHA256)
	case CmdUserDel:
		var a userArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		s.log.Info("admin: deleting user", "user", a.User)
		ended, err := b.DeleteUser(ctx, a.User)
		return endedResult{Ended: nonNil(ended)}, err
	case CmdUserList:
		users, err := b.ListUsers(ctx)
		return nonNil(users), err
	case CmdReload:
		s.log.Info("admin: reload requested")
		return b.Reload(ctx)
	case CmdPushLog:
		var q PushLogQuery
		if err := decode(&q); err != nil {
			return nil, err
		}
		f, err := q.filter(time.Now())
		if err != nil {
			return nil, err
		}
		recs, err := b.PushLog(ctx, f)
		if recs == nil {
			recs = []PushRecord{}
		}
		return recs, err
	case CmdPushDevices, CmdPushTest:
		var a pushOwnerArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		if a.Owner == "" {
			return nil, fmt.Errorf("%w: %s needs the account (owner)", ErrBadRequest, req.Command)
		}
		if req.Command == CmdPushDevices {
			list, err := b.PushDevices(ctx, a.Owner)
			if list.Devices == nil {
				list.Devices = []PushDevice{}
			}
			return list, err
		}
		s.log.Info("admin: sending test pushes", "owner", a.Owner)
		report, err := b.PushTest(ctx, a.Owner)
		if report.Results == nil {
			report.Results = []PushTestResult{}
		}
		return report, err
	}
	return nil, fmt.Errorf("%w: %q (is the wren command newer than the running server?)", ErrUnknownCommand, req.Command)
}

// failed turns an error into a failure response.
func failed(err error) Response {
	code := errFailed.Code
	for _, e := range []*Error{ErrNotFound, ErrExists, ErrBadRequest, ErrUnknownCommand} {
		if errors.Is(err, e) {
			code = e.Code
			break
		}
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		code = ErrNotFound.Code
	case errors.Is(err, storage.ErrExists):
		code = ErrExists.Code
	}
	return Response{Code: code, Error: err.Error()}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
