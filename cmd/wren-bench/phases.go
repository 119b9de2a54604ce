package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"wren.im/wren/internal/benchclient"
)

// target says where the server is and how to log in.
type target struct {
	Addr      string
	Domain    string
	TLS       bool   // STARTTLS; false connects in plain text
	CAFile    string // trust this CA; empty skips verification
	Mechanism string
	Prefix    string // account names are Prefix + index
	Users     int    // accounts Prefix0 .. Prefix(Users-1)
	Password  string
	ServerPID int // for RSS and CPU readings; 0 if unknown
	Keys      *benchclient.KeyCache
	// PostQuantum also offers the hybrid key exchange X25519MLKEM768.
	PostQuantum bool

	tlsConf *tls.Config
}

// tlsConfig returns the TLS configuration, building it on the first call.
// Each phase calls it before starting goroutines, which then only read it.
func (t *target) tlsConfig() (*tls.Config, error) {
	if !t.TLS {
		return nil, nil
	}
	if t.tlsConf != nil {
		return t.tlsConf, nil
	}
	c := &tls.Config{ServerName: t.Domain, ClientSessionCache: nil}
	if !t.PostQuantum {
		// Like today's mobile clients, and the only choice Prosody and
		// ejabberd have with Debian 12's OpenSSL 3.0: without this, Go
		// offers X25519MLKEM768 first, and a Go server (Wren) pays for
		// a larger handshake than its peers in the same comparison.
		c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	if t.CAFile == "" {
		c.InsecureSkipVerify = true
	} else {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	t.tlsConf = c
	return c, nil
}

func (t *target) user(i int) string { return t.Prefix + strconv.Itoa(i) }

func (t *target) config(i int, resource string) (*benchclient.Config, error) {
	tc, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	return &benchclient.Config{
		Addr: t.Addr, Domain: t.Domain, User: t.user(i), Password: t.Password,
		Resource: resource, TLS: tc, Mechanism: t.Mechanism, Keys: t.Keys,
	}, nil
}

// login connects account i with resource, binds, fetches the roster and
// sends initial presence.
func (t *target) login(ctx context.Context, i int, resource string) (*benchclient.Conn, error) {
	cfg, err := t.config(i, resource)
	if err != nil {
		return nil, err
	}
	c, err := benchclient.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Login(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", cfg.User, err)
	}
	if err := c.RosterGet(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", cfg.User, err)
	}
	if err := c.SendPresence(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: presence: %w", cfg.User, err)
	}
	return c, nil
}

// errorLog keeps the number of errors and the first few messages.
type errorLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errorLog) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 3 {
		e.first = append(e.first, err.Error())
	}
}

func (e *errorLog) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func (e *errorLog) samples() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.first...)
}

// forEach runs f(i) for i in [0, n) on at most conc goroutines and stops
// handing out work when ctx is done.
func forEach(ctx context.Context, n, conc int, f func(i int)) {
	if conc < 1 {
		conc = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// closeAll closes connections on a few goroutines.
func closeAll(conns []*benchclient.Conn) {
	forEach(context.Background(), len(conns), 16, func(i int) {
		if conns[i] != nil {
			conns[i].Close()
		}
	})
}

// RegisterResult is the summary of the register phase.
type RegisterResult struct {
	Phase     string   `json:"phase"`
	Accounts  int      `json:"accounts"`
	Created   int      `json:"created"`
	Existing  int      `json:"existing"`
	Failures  int      `json:"failures"`
	Errors    []string `json:"errors,omitempty"`
	ElapsedS  float64  `json:"elapsed_s"`
	PerSecond float64  `json:"per_s"`
	CPUStats
}

// runRegister creates accounts 0..Users-1 by in-band registration;
// existing accounts count as success.
func runRegister(ctx context.Context, t *target, conc int) (*RegisterResult, error) {
	if _, err := t.tlsConfig(); err != nil {
		return nil, err
	}
	meter := newCPUMeter(t.ServerPID)
	var created, existing atomic.Int64
	var errs errorLog
	start := time.Now()
	forEach(ctx, t.Users, conc, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cfg, err := t.config(i, "")
		if err != nil {
			errs.add(err)
			return
		}
		c, err := benchclient.Dial(cctx, cfg)
		if err != nil {
			errs.add(err)
			return
		}
		defer c.Close()
		switch err := c.Register(cctx); {
		case err == nil:
			created.Add(1)
		case errors.Is(err, benchclient.ErrConflict):
			existing.Add(1)
		default:
			errs.add(fmt.Errorf("register %s: %w", cfg.User, err))
		}
	})
	el := time.Since(start)
	r := &RegisterResult{
		Phase: "register", Accounts: t.Users, Created: int(created.Load()), Existing: int(existing.Load()),
		Failures: errs.count(), Errors: errs.samples(), ElapsedS: round(el.Seconds(), 3),
		PerSecond: round(float64(created.Load()+existing.Load())/el.Seconds(), 1), CPUStats: meter.Stop(),
	}
	if r.Created+r.Existing < t.Users {
		return r, fmt.Errorf("register: %d of %d accounts failed or were not attempted (%v)", t.Users-r.Created-r.Existing, t.Users, ctx.Err())
	}
	return r, nil
}

// LoginResult is the summary of the login phase.
type LoginResult struct {
	Phase       string   `json:"phase"`
	Accounts    int      `json:"accounts"`
	Concurrency int      `json:"concurrency"`
	OK          int      `json:"ok"`
	Failures    int      `json:"failures"`
	Errors      []string `json:"errors,omitempty"`
	ElapsedS    float64  `json:"elapsed_s"`
	PerSecond   float64  `json:"logins_per_s"`
	P50ms       float64  `json:"p50_ms"`
	P99ms       float64  `json:"p99_ms"`
	Maxms       float64  `json:"max_ms"`
	CPUStats
}

// runLogin logs every account in (STARTTLS, SCRAM, bind, roster get,
// initial presence) with at most conc logins in flight, holding the
// connections until all are done.
func runLogin(ctx context.Context, t *target, conc int) (*LoginResult, error) {
	if _, err := t.tlsConfig(); err != nil {
		return nil, err
	}
	meter := newCPUMeter(t.ServerPID)
	conns := make([]*benchclient.Conn, t.Users)
	var h benchclient.Histogram
	var errs errorLog
	var lastDone atomic.Int64
	start := time.Now()
	forEach(ctx, t.Users, conc, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		t0 := time.Now()
		c, err := t.login(cctx, i, "bench")
		if err != nil {
			errs.add(err)
			return
		}
		h.Record(time.Since(t0))
		lastDone.Store(int64(time.Since(start)))
		conns[i] = c
	})
	el := time.Duration(lastDone.Load())
	if el <= 0 {
		el = time.Since(start)
	}
	cpu := meter.Stop()
	closeAll(conns)
	ok := int(h.Count())
	r := &LoginResult{
		Phase: "login", Accounts: t.Users, Concurrency: conc, OK: ok, Failures: errs.count(), Errors: errs.samples(),
		ElapsedS: round(el.Seconds(), 3), PerSecond: round(float64(ok)/el.Seconds(), 1),
		P50ms: ms(h.Quantile(0.5)), P99ms: ms(h.Quantile(0.99)), Maxms: ms(h.Max()), CPUStats: cpu,
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("login: deadline reached after %d of %d logins: %w", ok, t.Users, ctx.Err())
	}
	return r, nil
}

// IdleResult is the summary of the idle phase.
type IdleResult struct {
	Phase       string   `json:"phase"`
	TLS         bool     `json:"tls"`
	Connections int      `json:"connections"`
	OK          int      `json:"ok"`
	Failures    int      `json:"failures"`
	Errors      []string `json:"errors,omitempty"`
	ConnectS    float64  `json:"connect_s"`
	RSSBeforeKB int64    `json:"rss_before_kb"`
	RSSAfterKB  int64    `json:"rss_after_kb"`
	KBPerConn   float64  `json:"kb_per_conn"`
	CPUStats
}

// runIdle opens n authenticated connections (accounts used in turn, each
// with its own resource), waits settle, and reads the server's RSS.
func runIdle(ctx context.Context, t *target, n, conc int, settle time.Duration) (*IdleResult, error) {
	if t.ServerPID <= 0 {
		return nil, errors.New("idle: --server-pid is required to read the server's memory")
	}
	if _, err := t.tlsConfig(); err != nil {
		return nil, err
	}
	before, err := procRSS(t.ServerPID)
	if err != nil {
		return nil, err
	}
	meter := newCPUMeter(t.ServerPID)
	conns := make([]*benchclient.Conn, n)
	defer closeAll(conns)
	var errs errorLog
	var ok atomic.Int64
	start := time.Now()
	forEach(ctx, n, conc, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		c, err := t.login(cctx, i%t.Users, "idle"+strconv.Itoa(i/t.Users))
		if err != nil {
			errs.add(err)
			return
		}
		ok.Add(1)
		conns[i] = c
	})
	connect := time.Since(start)
	select {
	case <-ctx.Done():
	case <-time.After(settle):
	}
	after, err := procRSS(t.ServerPID)
	if err != nil {
		return nil, err
	}
	r := &IdleResult{
		Phase: "idle", TLS: t.TLS, Connections: n, OK: int(ok.Load()), Failures: errs.count(), Errors: errs.samples(),
		ConnectS: round(connect.Seconds(), 3), RSSBeforeKB: before, RSSAfterKB: after, CPUStats: meter.Stop(),
	}
	if r.OK > 0 {
		r.KBPerConn = round(float64(after-before)/float64(r.OK), 1)
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("idle: deadline reached with %d of %d connections: %w", r.OK, n, ctx.Err())
	}
	return r, nil
}

// MsgsResult is the summary of the msgs phase.
type MsgsResult struct {
	Phase       string   `json:"phase"`
	Pairs       int      `json:"pairs"`
	Rate        float64  `json:"rate,omitempty"` // 0: max rate
	Window      int      `json:"window,omitempty"`
	DurationS   float64  `json:"duration_s"`
	Sent        int64    `json:"sent"`
	Delivered   int64    `json:"delivered"`
	Lost        int64    `json:"lost"`
	Duplicated  int64    `json:"duplicated"`
	OutOfOrder  int64    `json:"out_of_order"`
	Bounced     int64    `json:"bounced"`
	PerSecond   float64  `json:"delivered_per_s"`
	SentPerS    float64  `json:"sent_per_s"`
	P50ms       float64  `json:"p50_ms"`
	P90ms       float64  `json:"p90_ms"`
	P99ms       float64  `json:"p99_ms"`
	Maxms       float64  `json:"max_ms"`
	Failures    int      `json:"failures"`
	Errors      []string `json:"errors,omitempty"`
	LoginFailed int      `json:"login_failures,omitempty"`
	CPUStats
}

// pair is one sender and one receiver with the receiver's bookkeeping.
type pair struct {
	from, to *benchclient.Conn
	toJID    string
	sent     atomic.Int64
	received atomic.Int64 // unique deliveries
	wake     chan struct{}

	// Owned by the receiver's goroutine.
	seen    []uint64
	maxSeq  int64
	dups    int64
	reorder int64
}

// mark records seq and reports whether it was new.
func (p *pair) mark(seq int64) bool {
	w := int(seq / 64)
	if w >= len(p.seen) {
		if w > 1<<22 { // 256 M messages: refuse to grow further
			return true
		}
		p.seen = append(p.seen, make([]uint64, w+1-len(p.seen))...)
	}
	bit := uint64(1) << uint(seq%64)
	if p.seen[w]&bit != 0 {
		p.dups++
		return false
	}
	p.seen[w] |= bit
	if seq < p.maxSeq {
		p.reorder++
	} else {
		p.maxSeq = seq
	}
	return true
}

// runMsgs logs in pairs senders (accounts 0..pairs-1) and receivers
// (accounts pairs..2*pairs-1) and sends messages for dur: at most window
// undelivered messages per pair when rate is 0, else rate messages per
// second in total. It then waits up to drain for the last deliveries.
func runMsgs(ctx context.Context, t *target, pairs int, rate float64, window int, dur, drain time.Duration, conc int) (*MsgsResult, error) {
	if 2*pairs > t.Users {
		return nil, fmt.Errorf("msgs: %d pairs need %d accounts, have %d", pairs, 2*pairs, t.Users)
	}
	if window < 1 {
		window = 1
	}
	if _, err := t.tlsConfig(); err != nil {
		return nil, err
	}
	ps := make([]*pair, pairs)
	recv := make([]*benchclient.Conn, pairs)
	var loginErrs, errs errorLog
	forEach(ctx, 2*pairs, conc, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		c, err := t.login(cctx, i, "msgs")
		if err != nil {
			loginErrs.add(err)
			return
		}
		// Each worker writes a distinct element.
		if i < pairs {
			ps[i] = &pair{from: c, wake: make(chan struct{}, 1), toJID: t.user(pairs+i) + "@" + t.Domain}
		} else {
			recv[i-pairs] = c
		}
	})
	var all []*benchclient.Conn
	for i := range ps {
		if ps[i] != nil {
			all = append(all, ps[i].from)
			ps[i].to = recv[i]
		}
		if recv[i] != nil {
			all = append(all, recv[i])
		}
	}
	defer closeAll(all)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("msgs: logging in: %w", err)
	}
	for i := range ps {
		if ps[i] == nil || ps[i].to == nil {
			loginErrs.add(fmt.Errorf("pair %d is not logged in", i))
		}
	}
	if n := loginErrs.count(); n > 0 {
		return &MsgsResult{Phase: "msgs", Pairs: pairs, LoginFailed: n, Errors: loginErrs.samples()},
			fmt.Errorf("msgs: %d logins failed: %v", n, loginErrs.samples())
	}
	// Let presence settle so that the receivers are available.
	time.Sleep(500 * time.Millisecond)

	var h benchclient.Histogram
	var bounced atomic.Int64
	var lastRecv atomic.Int64
	base := time.Now()
	var readers sync.WaitGroup
	for _, p := range ps {
		readers.Add(2)
		go func() {
			defer readers.Done()
			receive(p, base, &h, &lastRecv, &bounced, &errs)
		}()
		go func() {
			defer readers.Done()
			drainSender(p, &bounced)
		}()
	}

	meter := newCPUMeter(t.ServerPID)
	sendCtx, cancel := context.WithTimeout(ctx, dur)
	start := time.Now()
	var senders sync.WaitGroup
	for i, p := range ps {
		senders.Add(1)
		go func() {
			defer senders.Done()
			var err error
			if rate > 0 {
				err = sendPaced(sendCtx, p, base, rate/float64(pairs), time.Duration(float64(i)/rate*float64(time.Second)))
			} else {
				err = sendWindow(sendCtx, p, base, int64(window))
			}
			if err != nil {
				errs.add(err)
			}
		}()
	}
	senders.Wait()
	cancel()
	sendEnd := time.Since(start)
	var sent int64
	for _, p := range ps {
		sent += p.sent.Load()
	}
	// Wait for the last deliveries.
	drainUntil := time.Now().Add(drain)
	for time.Now().Before(drainUntil) && ctx.Err() == nil {
		var got int64
		for _, p := range ps {
			got += p.received.Load()
		}
		if got >= sent {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu := meter.Stop()
	// Stop the readers before reading their counters.
	for _, p := range ps {
		p.to.SetReadDeadline(longAgo)
		p.from.SetReadDeadline(longAgo)
	}
	readers.Wait()

	r := &MsgsResult{Phase: "msgs", Pairs: pairs, Rate: rate, DurationS: round(sendEnd.Seconds(), 3), Sent: sent, CPUStats: cpu}
	if rate == 0 {
		r.Window = window
	}
	for _, p := range ps {
		r.Delivered += p.received.Load()
		r.Duplicated += p.dups
		r.OutOfOrder += p.reorder
	}
	r.Lost = r.Sent - r.Delivered
	r.Bounced = bounced.Load()
	active := time.Duration(lastRecv.Load()) - start.Sub(base)
	if active < sendEnd {
		active = sendEnd
	}
	r.PerSecond = round(float64(r.Delivered)/active.Seconds(), 1)
	r.SentPerS = round(float64(sent)/sendEnd.Seconds(), 1)
	r.P50ms, r.P90ms, r.P99ms, r.Maxms = ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99)), ms(h.Max())
	r.Failures, r.Errors = errs.count(), errs.samples()
	if ctx.Err() != nil {
		return r, fmt.Errorf("msgs: deadline reached: %w", ctx.Err())
	}
	return r, nil
}

var longAgo = time.Unix(1, 0)

// message builds one numbered, time-stamped message.
func message(buf []byte, to string, seq int64, ts time.Duration) []byte {
	buf = append(buf, "<message type='chat' to='"...)
	buf = append(buf, to...)
	buf = append(buf, "' id='m"...)
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, "'><body>"...)
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(ts), 10)
	buf = append(buf, "</body></message>"...)
	return buf
}

// sendWindow sends as fast as the receiver keeps up: at most window
// messages of the pair are undelivered at any time.
func sendWindow(ctx context.Context, p *pair, base time.Time, window int64) error {
	buf := make([]byte, 0, 256)
	for ctx.Err() == nil {
		room := window - (p.sent.Load() - p.received.Load())
		if room <= 0 {
			select {
			case <-p.wake:
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for range room {
			seq := p.sent.Load()
			buf = message(buf[:0], p.toJID, seq, time.Since(base))
			if _, err := p.from.Write(buf); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			p.sent.Add(1)
		}
		if err := p.from.Flush(); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	return nil
}

// sendPaced sends rate messages per second, starting after offset.
func sendPaced(ctx context.Context, p *pair, base time.Time, rate float64, offset time.Duration) error {
	interval := time.Duration(float64(time.Second) / rate)
	buf := make([]byte, 0, 256)
	next := time.Now().Add(offset)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		seq := p.sent.Load()
		buf = message(buf[:0], p.toJID, seq, time.Since(base))
		if _, err := p.from.Write(buf); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if err := p.from.Flush(); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		p.sent.Add(1)
		next = next.Add(interval)
		timer.Reset(time.Until(next))
	}
}

var bodyOpen = []byte("<body>")

// receive reads the receiver's stream until its deadline passes, recording
// the latency of each numbered message.
func receive(p *pair, base time.Time, h *benchclient.Histogram, lastRecv, bounced *atomic.Int64, errs *errorLog) {
	for {
		el, err := p.to.Next()
		if err != nil {
			return
		}
		if !benchclient.HasName(el, "message") {
			continue
		}
		if typ, _ := benchclient.Attr(el, "type"); typ == "error" {
			bounced.Add(1)
			continue
		}
		i := bytes.Index(el, bodyOpen)
		if i < 0 {
			continue
		}
		body := el[i+len(bodyOpen):]
		if j := bytes.IndexByte(body, '<'); j >= 0 {
			body = body[:j]
		}
		sp := bytes.IndexByte(body, ' ')
		if sp < 0 {
			continue
		}
		seq, err1 := strconv.ParseInt(string(body[:sp]), 10, 64)
		ts, err2 := strconv.ParseInt(string(body[sp+1:]), 10, 64)
		if err1 != nil || err2 != nil || seq < 0 {
			errs.add(fmt.Errorf("unparsable body %q", body))
			continue
		}
		now := time.Since(base)
		if p.mark(seq) {
			h.Record(now - time.Duration(ts))
			p.received.Add(1)
			lastRecv.Store(int64(now))
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
}

// drainSender reads (and discards) what the server sends to a sender,
// counting bounced messages.
func drainSender(p *pair, bounced *atomic.Int64) {
	for {
		el, err := p.from.Next()
		if err != nil {
			return
		}
		if benchclient.HasName(el, "message") {
			if typ, _ := benchclient.Attr(el, "type"); typ == "error" {
				bounced.Add(1)
			}
		}
	}
}
