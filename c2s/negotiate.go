package c2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/auth"
	"wren.im/wren/xmpp"
)

// maxAuthFailures is how many failed SASL attempts one stream may make.
const maxAuthFailures = 5

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// negotiate runs the stream negotiation up to a bound or resumed session.
func (s *Session) negotiate(ctx context.Context) error {
	limits := s.srv.cfg.Limits
	pre := limits
	if s.srv.cfg.PreAuthBytes > 0 {
		pre.MaxBytes = s.srv.cfg.PreAuthBytes
	}
	if s.directTLS {
		if err := s.handshakeTLS(); err != nil {
			return err
		}
	} else {
		s.in = xmpp.NewPooledReader(s.srv.readBufs)
		// The reader's wait sends what negotiation queued. After
		// negotiation the stanza loop waits at stanza boundaries
		// (waitInput); inside a stanza a read blocks holding its buffer.
		s.in.Reset(s.conn, s.flushOut)
		s.reader = xmpp.NewReader(s.in, pre)
		s.out = s.conn
	}
	s.reader.SetLimits(pre)
	authed := false
	failures := 0
	for {
		if err := s.openStream(); err != nil {
			return err
		}
		if s.overLimit {
			return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "too many connections from your address")
		}
		if authed {
			s.reader.SetLimits(limits)
			return s.negotiateBind(ctx)
		}
		if err := s.writeFeatures(); err != nil {
			return err
		}
	elements:
		for {
			el, err := s.reader.Next()
			if err != nil {
				return err
			}
			switch {
			case el.Is(xmpp.NSTLS, "starttls"):
				if s.secure || s.srv.cfg.TLS == nil {
					return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "STARTTLS is not available on this stream")
				}
				if err := s.write(xmpp.NewElement(xmpp.NSTLS, "proceed")); err != nil {
					return err
				}
				if err := s.handshakeTLS(); err != nil {
					return err
				}
				break elements
			case el.Is(xmpp.NSSASL, "auth"):
				if !s.authAllowed() {
					if err := s.write(saslFailure("encryption-required", "use STARTTLS before authenticating")); err != nil {
						return err
					}
					continue
				}
				ok, err := s.authenticate(ctx, el)
				if err != nil {
					return err
				}
				if ok {
					authed = true
					s.in.Reset(s.readSource(), s.flushOut)
					s.reader.Reset(s.in)
					break elements
				}
				failures++
				if failures >= maxAuthFailures {
					return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "too many failed authentication attempts")
				}
			case el.Is(xmpp.NSClient, "iq"):
				if err := s.preAuthIQ(ctx, el); err != nil {
					return err
				}
			default:
				return xmpp.NewStreamError(xmpp.StreamNotAuthorized, "authenticate before sending <%s/>", el.Local)
			}
		}
	}
}

func (s *Session) readSource() net.Conn {
	if s.tls != nil {
		return s.tls
	}
	return s.conn
}

func (s *Session) authAllowed() bool {
	if s.secure {
		return true
	}
	return s.srv.cfg.AllowPlaintextLoopback && isLoopback(s.raw.RemoteAddr())
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (s *Session) handshakeTLS() error {
	if s.srv.cfg.TLS == nil {
		return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "TLS is not configured")
	}
	if err := s.flushOut(); err != nil { // <proceed/>
		return err
	}
	cfg := s.srv.cfg.TLS
	// From now on the connection carries TLS records: reads stop at
	// record ends (see deadlineConn.records).
	s.conn.records = true
	t := tls.Server(s.conn, cfg)
	hctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := t.HandshakeContext(hctx); err != nil {
		s.logger().Info("TLS handshake with client failed", "err", err)
		return errTLSFailed
	}
	if c := s.conn.served; c != nil {
		s.servedLeaf = leafOf(c) // recorded by the GetCertificate of New
		s.conn.served = nil
	}
	s.tls = t
	s.secure = true
	if s.in == nil {
		s.in = xmpp.NewPooledReader(s.srv.readBufs)
	}
	s.in.Reset(t, s.flushOut)
	if s.reader == nil {
		s.reader = xmpp.NewReader(s.in, s.srv.cfg.Limits)
	} else {
		s.reader.Reset(s.in)
	}
	s.out = t
	return nil
}

var errTLSFailed = errors.New("c2s: TLS handshake failed")

// leafOf returns the parsed leaf of c, or nil if it cannot be parsed.
func leafOf(c *tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// openStream reads the client's stream header and answers with ours.
func (s *Session) openStream() error {
	h, err := s.reader.ReadHeader()
	if err != nil {
		if se, ok := xmpp.AsStreamError(err); ok {
			// RFC 6120 §4.9.1.2: open a stream before sending the error.
			s.writeRaw(xmpp.Header(xmpp.StreamHeader{NS: xmpp.NSClient, From: s.srv.cfg.Domain, ID: randomID(), Version: "1.0"}))
			return se
		}
		return err
	}
	s.lang = h.Lang
	s.streamID = randomID()
	reply := xmpp.StreamHeader{NS: xmpp.NSClient, From: s.srv.cfg.Domain, ID: s.streamID, Version: "1.0", Lang: "en"}
	if h.From != "" {
		if j, err := jid.Parse(h.From); err == nil && j.Domainpart() == s.srv.cfg.Domain {
			reply.To = j.String()
		}
	}
	if err := s.writeRaw(xmpp.Header(reply)); err != nil {
		return err
	}
	if h.NS != xmpp.NSClient {
		return xmpp.NewStreamError(xmpp.StreamInvalidNamespace, "client streams use the jabber:client namespace")
	}
	if h.Version != "" && !strings.HasPrefix(h.Version, "1.") {
		return xmpp.NewStreamError(xmpp.StreamUnsupportedVersion, "only XMPP 1.x is supported")
	}
	if h.Version == "" {
		return xmpp.NewStreamError(xmpp.StreamUnsupportedVersion, "streams without version='1.0' are not supported")
	}
	to, err := jid.Parse(h.To)
	if err != nil || to.Domainpart() != s.srv.cfg.Domain || h.To == "" {
		return xmpp.NewStreamError(xmpp.StreamHostUnknown, "this server serves %s", s.srv.cfg.Domain)
	}
	return nil
}

func (s *Session) writeFeatures() error {
	f := xmpp.NewElement(xmpp.NSStream, "features")
	if !s.secure && s.srv.cfg.TLS != nil {
		st := f.AddChild(xmpp.NSTLS, "starttls")
		if !s.authAllowed() {
			st.AddChild(xmpp.NSTLS, "required")
		}
	}
	if s.authAllowed() {
		srv := s.saslServer()
		mechs := f.AddChild(xmpp.NSSASL, "mechanisms")
		for _, m := range srv.Mechanisms() {
			mechs.AddChild(xmpp.NSSASL, "mechanism").AppendText(m)
		}
		if cbs := srv.ChannelBindings(); len(cbs) > 0 {
			cb := f.AddChild(xmpp.NSSASLCB, "sasl-channel-binding")
			for _, t := range cbs {
				cb.AddChild(xmpp.NSSASLCB, "channel-binding", "type", t)
			}
		}
		if s.srv.cfg.Hooks.RegisterFeature {
			f.AddChild(xmpp.NSRegisterFeature, "register")
		}
	}
	return s.write(f)
}

func (s *Session) saslServer() *auth.Server {
	var state *tls.ConnectionState
	if s.tls != nil {
		cs := s.tls.ConnectionState()
		state = &cs
	}
	return s.srv.saslServer(state, s.servedLeaf)
}

func saslFailure(cond, text string) *xmpp.Element {
	f := xmpp.NewElement(xmpp.NSSASL, "failure")
	f.AddChild(xmpp.NSSASL, cond)
	if text != "" {
		t := f.AddChild(xmpp.NSSASL, "text")
		t.Attrs = []xmpp.Attr{{Space: xmpp.NSXML, Local: "lang", Value: "en"}}
		t.AppendText(text)
	}
	return f
}

// authenticate runs one SASL exchange. It returns true on success, false
// after a <failure/> was sent, or an error that ends the stream.
func (s *Session) authenticate(ctx context.Context, el *xmpp.Element) (bool, error) {
	srv := s.saslServer()
	mech := el.Attr("mechanism")
	ex, err := srv.Start(ctx, mech)
	if err != nil {
		return false, s.write(saslFailure("invalid-mechanism", "mechanism "+mech+" is not offered"))
	}
	data := el.Text()
	for {
		msg, err := decodeSASL(data)
		if err != nil {
			s.srv.cfg.Metrics.Auth(mech, AuthFailure)
			return false, s.write(saslFailure("incorrect-encoding", "invalid base64"))
		}
		resp, done, err := ex.Step(msg)
		if err != nil {
			return false, s.authFailed(mech, ex.Claimed(), err)
		}
		if done {
			user := ex.Username()
			full, jerr := jid.New(user, s.srv.cfg.Domain, "")
			if jerr != nil {
				return false, s.authFailed(mech, ex.Claimed(), auth.ErrNotAuthorized)
			}
			s.srv.cfg.Metrics.Auth(mech, AuthSuccess)
			s.jid = full
			s.srv.failures.succeed(remoteIP(s.raw.RemoteAddr()))
			s.srv.failures.succeed(accountKey(ex.Username()))
			success := xmpp.NewElement(xmpp.NSSASL, "success")
			if len(resp) > 0 {
				success.AppendText(base64.StdEncoding.EncodeToString(resp))
			}
			s.logger().Info("client authenticated", "mechanism", mech)
			return true, s.write(success)
		}
		ch := xmpp.NewElement(xmpp.NSSASL, "challenge")
		ch.AppendText(base64.StdEncoding.EncodeToString(resp))
		if err := s.write(ch); err != nil {
			return false, err
		}
		next, err := s.reader.Next()
		if err != nil {
			return false, err
		}
		switch {
		case next.Is(xmpp.NSSASL, "response"):
			data = next.Text()
		case next.Is(xmpp.NSSASL, "abort"):
			s.srv.cfg.Metrics.Auth(mech, AuthFailure)
			return false, s.write(saslFailure("aborted", ""))
		default:
			return false, xmpp.NewStreamError(xmpp.StreamPolicyViolation, "expected a SASL response, got <%s/>", next.Local)
		}
	}
}

// authFailed counts a failed attempt with mech and sends the <failure/>
// for err after the per-address delay.
func (s *Session) authFailed(mech, claimed string, err error) error {
	cond := "not-authorized"
	text := "wrong username or password"
	guess := true // a failure that may be a password guess is slowed down
	switch {
	case errors.Is(err, auth.ErrDowngrade):
		text = "channel binding downgrade detected: use a -PLUS mechanism"
		guess = false
	case errors.Is(err, auth.ErrNotAuthorized):
	case errors.Is(err, auth.ErrMalformed):
		cond, text, guess = "malformed-request", "the SASL message was not understood", false
	case errors.Is(err, auth.ErrInvalidAuthzid):
		cond, text = "invalid-authzid", "you may only act as yourself"
	case errors.Is(err, auth.ErrInvalidMechanism):
		cond, text, guess = "invalid-mechanism", "", false
	default:
		s.logger().Error("authentication could not be checked", "err", err)
		cond, text, guess = "temporary-auth-failure", "the server could not check your credentials; try again later", false
	}
	outcome := AuthFailure
	if cond == "temporary-auth-failure" {
		outcome = AuthError
	}
	s.srv.cfg.Metrics.Auth(mech, outcome)
	var delay time.Duration
	if guess {
		now := time.Now()
		delay = s.srv.failures.fail(remoteIP(s.raw.RemoteAddr()), now)
		if claimed != "" {
			// Guessing one account from many addresses is slowed too.
			delay = max(delay, s.srv.failures.fail(accountKey(claimed), now))
		}
	}
	s.logger().Info("client authentication failed", "account", claimed, "mechanism", mech, "condition", cond, "reason", err.Error(), "delay", delay)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-s.done:
			return errors.New("c2s: closed while delaying an authentication failure")
		}
	}
	return s.write(saslFailure(cond, text))
}

// accountKey is the failure tracker's key for attempts on one account
// (addresses and accounts share the tracker; an IP never starts with "@").
func accountKey(username string) string { return "@" + username }

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return a.String()
}

func decodeSASL(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "=" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

func (s *Session) preAuthIQ(ctx context.Context, iq *xmpp.Element) error {
	h := s.srv.cfg.Hooks.PreAuthIQ
	var reply *xmpp.Element
	if h != nil && s.authAllowed() {
		reply = h(ctx, iq, remoteIP(s.raw.RemoteAddr()), s.secure)
	}
	if reply == nil {
		return xmpp.NewStreamError(xmpp.StreamNotAuthorized, "authenticate before sending stanzas")
	}
	return s.write(reply)
}

// negotiateBind advertises bind and handles it (and the legacy session IQ).
func (s *Session) negotiateBind(ctx context.Context) error {
	f := xmpp.NewElement(xmpp.NSStream, "features")
	f.AddChild(xmpp.NSBind, "bind")
	f.AddChild(xmpp.NSSession, "session").AddChild(xmpp.NSSession, "optional")
	f.AddChild(xmpp.NSRosterVer, "ver")
	f.AddChild(xmpp.NSPreApprove, "sub")
	f.AddChild(xmpp.NSSM, "sm")
	f.AddChild(xmpp.NSCSI, "csi")
	if h := s.srv.cfg.Hooks.StreamFeatures; h != nil {
		for _, el := range h() {
			f.Append(el)
		}
	}
	if err := s.write(f); err != nil {
		return err
	}
	for {
		el, err := s.reader.Next()
		if err != nil {
			return err
		}
		switch {
		case el.Is(xmpp.NSSM, "resume"):
			ok, err := s.resume(el)
			if err != nil || ok {
				return err
			}
			continue
		case el.Is(xmpp.NSSM, "enable"):
			// XEP-0198 §3: enabling before binding is an error.
			if err := s.write(smFailed(xmpp.CondUnexpectedRequest, "bind a resource before enabling stream management", -1)); err != nil {
				return err
			}
			continue
		}
		if !el.Is(xmpp.NSClient, "iq") {
			return xmpp.NewStreamError(xmpp.StreamNotAuthorized, "bind a resource before sending <%s/>", el.Local)
		}
		bind := el.Child(xmpp.NSBind, "bind")
		if bind == nil || el.Attr("type") != "set" {
			reply := xmpp.ErrorReply(el, xmpp.NewStanzaError(xmpp.CondNotAuthorized, "bind a resource first"))
			if reply != nil {
				reply.SetAttr("from", "")
				if err := s.write(reply); err != nil {
					return err
				}
			}
			continue
		}
		res := strings.TrimSpace(bind.ChildText(xmpp.NSBind, "resource"))
		if res == "" {
			res = "wren-" + randomID()[:12]
		}
		full, err := jid.New(s.jid.Localpart(), s.jid.Domainpart(), res)
		if err != nil || len(res) > 1023 {
			reply := xmpp.ErrorReply(el, xmpp.NewStanzaError(xmpp.CondBadRequest, "the resource is not a valid resourcepart"))
			reply.SetAttr("from", "")
			if err := s.write(reply); err != nil {
				return err
			}
			continue
		}
		s.jid = full
		s.mu.Lock()
		s.state = stateActive
		s.boundAt = time.Now()
		s.mu.Unlock()
		if old := s.srv.cfg.Router.Bind(s); old != nil {
			s.logger().Info("resource conflict: replacing the older session", "jid", full.String())
			if os, ok := old.(*Session); ok {
				os.replaced()
			} else {
				old.Close(xmpp.NewStreamError(xmpp.StreamConflict, "replaced by a new connection for the same resource"))
			}
		}
		reply := xmpp.NewElement(xmpp.NSClient, "iq", "type", "result", "id", el.Attr("id"))
		reply.AddChild(xmpp.NSBind, "bind").AddChild(xmpp.NSBind, "jid").AppendText(full.String())
		s.logger().Info("client session bound")
		if err := s.write(reply); err != nil {
			return err
		}
		if h := s.srv.cfg.Hooks.Bound; h != nil {
			h(ctx, s)
		}
		return nil
	}
}

// write sends one element synchronously (negotiation only).
func (s *Session) write(el *xmpp.Element) error {
	if el.Space == xmpp.NSStream {
		return s.writeRaw(xmpp.AppendStreamElement(nil, el))
	}
	return s.writeRaw(el.AppendXML(nil, xmpp.NSClient))
}

// writeRaw queues b for the client during negotiation. What is queued
// goes out in one write when the server next waits for the client
// (flushOut is the reader's wait), before the TLS handshake and when
// negotiation ends: a stream header and its features, say, in one packet.
func (s *Session) writeRaw(b []byte) error {
	s.negOut = append(s.negOut, b...)
	return nil
}

// flushOut writes what negotiation queued.
func (s *Session) flushOut() error {
	if len(s.negOut) == 0 {
		return nil
	}
	s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.out.Write(s.negOut)
	s.negOut = s.negOut[:0]
	return err
}
