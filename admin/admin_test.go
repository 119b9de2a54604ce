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
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wren.im/wren/storage"
)

// fakeBackend records calls and answers from its fields.
type fakeBackend struct {
	mu      sync.Mutex
	users   map[string]storage.ScramCredential
	calls   []string
	block   chan struct{} // when set, Status waits for it
	entered chan struct{} // closed when a blocked Status starts
}

func newFake() *fakeBackend {
	return &fakeBackend{users: map[string]storage.ScramCredential{}}
}

func (f *fakeBackend) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeBackend) Status(ctx context.Context) (Status, error) {
	f.record("status")
	if f.block != nil {
		close(f.entered)
		<-f.block
	}
	return Status{Version: "test", Domain: "example.org", PID: 7, Sessions: 2, Hibernated: 1}, nil
}

func (f *fakeBackend) Sessions(ctx context.Context, user string) ([]Session, error) {
	f.record("sessions " + user)
	if user == "nobody" {
		return nil, nil
	}
	return []Session{{JID: "alice@example.org/phone", State: "hibernated", Queued: 3}}, nil
}

func (f *fakeBackend) Kick(ctx context.Context, jid, reason string) ([]string, error) {
	f.record("kick " + jid + " " + reason)
	if strings.HasPrefix(jid, "nobody") {
		return nil, fmt.Errorf("%w: %s has no session", ErrNotFound, jid)
	}
	return []string{jid + "/a", jid + "/b"}, nil
}

func (f *fakeBackend) UserExists(ctx context.Context, user string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.users[user]
	return ok, nil
}

func (f *fakeBackend) AddUser(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[user]; ok {
		return fmt.Errorf("creating %s: %w", user, storage.ErrExists)
	}
	f.users[user] = sha256
	return nil
}

func (f *fakeBackend) SetPassword(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[user]; !ok {
		return fmt.Errorf("no account: %w", storage.ErrNotFound)
	}
	f.users[user] = sha256
	return nil
}

func (f *fakeBackend) DeleteUser(ctx context.Context, user string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[user]; !ok {
		return nil, fmt.Errorf("no account: %w", storage.ErrNotFound)
	}
	delete(f.users, user)
	return []string{user + "@example.org/x"}, nil
}

func (f *fakeBackend) ListUsers(ctx context.Context) ([]string, error) {
	return []string{"alice", "bob"}, nil
}

func (f *fakeBackend) Reload(ctx context.Context) (ReloadResult, error) {
	return ReloadResult{}, errors.New("the configuration was not reloaded:\nconfig x: bad")
}

// socketPath returns a short socket path (Unix socket paths are limited).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wadm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, SocketName)
}

// serve runs a server for b at a new path until the test ends.
func serve(t *testing.T, b Backend) (path string, stop func()) {
	t.Helper()
	path = socketPath(t)
	srv, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, b) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Serve did not return within 5s of the cancel")
			}
		})
	}
	t.Cleanup(stop)
	return path, stop
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSocketIsOwnerOnly(t *testing.T) {
	path, _ := serve(t, newFake())
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		t.Errorf("%s is not a socket: %s", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %o, want 600", perm)
	}
}

func TestCommandsRoundTrip(t *testing.T) {
	fb := newFake()
	path, _ := serve(t, fb)
	c := dial(t, path)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.Domain != "example.org" || st.Hibernated != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	list, err := c.Sessions(ctx, "alice")
	if err != nil || len(list) != 1 || list[0].Queued != 3 {
		t.Fatalf("Sessions = %+v, %v", list, err)
	}
	if list, err := c.Sessions(ctx, "nobody"); err != nil || list == nil || len(list) != 0 {
		t.Errorf("Sessions of a user without sessions = %#v, %v; want an empty list", list, err)
	}
	ended, err := c.Kick(ctx, "alice@example.org", "bye")
	if err != nil || len(ended) != 2 {
		t.Fatalf("Kick = %v, %v", ended, err)
	}
	if _, err := c.Kick(ctx, "nobody@example.org", ""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "has no session") {
		t.Errorf("Kick of nobody = %v, want ErrNotFound with the server's message", err)
	}

	cred := storage.ScramCredential{Salt: []byte{1, 2, 3}, Iterations: 4096, StoredKey: []byte{4}, ServerKey: []byte{5}}
	if err := c.AddUser(ctx, "carol", cred, cred); err != nil {
		t.Fatal(err)
	}
	if err := c.AddUser(ctx, "carol", cred, cred); !errors.Is(err, ErrExists) {
		t.Errorf("second AddUser = %v, want ErrExists", err)
	}
	if got := fb.users["carol"]; string(got.Salt) != "\x01\x02\x03" || got.Iterations != 4096 {
		t.Errorf("credentials arrived as %+v", got)
	}
	if ok, err := c.UserExists(ctx, "carol"); !ok || err != nil {
		t.Errorf("UserExists = %v, %v", ok, err)
	}
	if err := c.SetPassword(ctx, "dave", cred, cred); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword of a missing user = %v, want ErrNotFound", err)
	}
	if ended, err := c.DeleteUser(ctx, "carol"); err != nil || len(ended) != 1 {
		t.Errorf("DeleteUser = %v, %v", ended, err)
	}
	if _, err := c.DeleteUser(ctx, "carol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteUser = %v, want ErrNotFound", err)
	}
	if users, err := c.ListUsers(ctx); err != nil || strings.Join(users, ",") != "alice,bob" {
		t.Errorf("ListUsers = %v, %v", users, err)
	}
	if _, err := c.Reload(ctx); err == nil || !strings.Contains(err.Error(), "config x: bad") {
		t.Errorf("Reload = %v, want the backend's error", err)
	}
	if err := c.Call(ctx, "frobnicate", nil, nil); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("unknown command = %v", err)
	}
	if err := c.Call(ctx, CmdUserAdd, map[string]string{"user": "x"}, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("user.add without credentials = %v, want ErrBadRequest", err)
	}
}

func TestMalformedRequestKeepsConnection(t *testing.T) {
	path, _ := serve(t, newFake())
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	fmt.Fprint(conn, "this is not json\n")
	var resp Response
	line, _ := r.ReadBytes('\n')
	if err := json.Unmarshal(line, &resp); err != nil || resp.OK || resp.Code != "bad_request" {
		t.Fatalf("answer to garbage: %q", line)
	}
	fmt.Fprint(conn, `{"command":"status"}`+"\n")
	line, _ = r.ReadBytes('\n')
	if err := json.Unmarshal(line, &resp); err != nil || !resp.OK {
		t.Fatalf("answer to status after garbage: %q", line)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := socketPath(t)
	// A server that crashed leaves its socket file behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the stale socket should exist: %v", err)
	}
	if _, err := Dial(context.Background(), path); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial to a stale socket = %v, want ErrNotRunning", err)
	}
	srv, err := Listen(path, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left the socket file: %v", err)
	}
}

func TestSecondServerRefused(t *testing.T) {
	path, _ := serve(t, newFake())
	if _, err := Listen(path, nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Listen = %v, want ErrRunning", err)
	}
	// The first one still answers.
	if _, err := dial(t, path).Status(context.Background()); err != nil {
		t.Fatalf("the first server stopped answering: %v", err)
	}
}

func TestOtherFileIsLeftAlone(t *testing.T) {
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the file was changed")
	}
}

func TestNotRunning(t *testing.T) {
	_, err := Dial(context.Background(), filepath.Join(t.TempDir(), "missing.sock"))
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial = %v, want ErrNotRunning", err)
	}
	long := "/tmp/" + strings.Repeat("d", 120) + "/admin.sock"
	if _, err := Listen(long, nil); !errors.Is(err, ErrPathTooLong) {
		t.Errorf("Listen on a long path = %v, want ErrPathTooLong", err)
	}
}

// TestShutdownEndsConnections checks that Serve returns once its context
// is cancelled even with idle clients connected and a request in progress,
// after that request finished, and that the socket file is gone.
func TestShutdownEndsConnections(t *testing.T) {
	fb := newFake()
	fb.block = make(chan struct{})
	fb.entered = make(chan struct{})
	path, stop := serve(t, fb)
	idle := dial(t, path)
	busy := dial(t, path)
	result := make(chan error, 1)
	go func() {
		_, err := busy.Status(context.Background())
		result <- err
	}()
	<-fb.entered
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Serve returned while a request was in progress")
	case <-time.After(100 * time.Millisecond):
	}
	close(fb.block)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the request finished")
	}
	<-result
	if _, err := idle.Status(context.Background()); err == nil {
		t.Error("an idle connection still answers after shutdown")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after shutdown: %v", err)
	}
}

func TestClientHonoursContext(t *testing.T) {
	fb := newFake()
	fb.block = make(chan struct{})
	fb.entered = make(chan struct{})
	path, _ := serve(t, fb)
	defer close(fb.block)
	c := dial(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Status(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Status with an expired context = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Status took %s despite a 100ms deadline", d)
	}
}
