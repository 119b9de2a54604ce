package s2s

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"wren.im/wren/xmpp"
)

// opened is an outgoing stream that is set up up to authentication: TCP,
// TLS when available, and the stream features of the latest stream.
type opened struct {
	c        *conn
	target   target
	streamID string
	features *xmpp.Element
	dbNS     bool // the peer declared the dialback namespace
	secure   bool
	certErr  error // why the peer's certificate is not valid for its domain; nil when it is
	bidi     bool  // we asked for a bidirectional stream (XEP-0288)
	stop     func() bool
}

// close ends the stream and releases its context watch.
func (o *opened) close(se *xmpp.StreamError) {
	o.stop()
	o.c.writeClose(se)
}

// remoteStreamError turns a <stream:error/> from a peer into an error.
func remoteStreamError(el *xmpp.Element) error {
	cond := "undefined-condition"
	for _, c := range el.Elements() {
		if c.Space == xmpp.NSStreams && c.Local != "text" {
			cond = c.Local
		}
	}
	if text := el.ChildText(xmpp.NSStreams, "text"); text != "" {
		return fmt.Errorf("the remote server closed the stream with %s: %s", cond, text)
	}
	return fmt.Errorf("the remote server closed the stream with %s", cond)
}

// next reads the next element, turning a stream error into an error.
func (c *conn) next() (*xmpp.Element, error) {
	el, err := c.reader.Next()
	if err != nil {
		return nil, err
	}
	if el.Is(xmpp.NSStream, "error") {
		return nil, remoteStreamError(el)
	}
	return el, nil
}

// openTarget connects to one address of p.remote and opens a stream from
// p.local, upgrading it with TLS when the peer offers it. The connection
// is interrupted when ctx ends, until stop is called.
func (s *Service) openTarget(ctx context.Context, p pair, t target) (*opened, error) {
	raw, err := s.dialer.DialContext(ctx, "tcp", t.addr())
	if err != nil {
		return nil, err
	}
	c := newConn(raw, s.preAuthLimits())
	if dl, ok := ctx.Deadline(); ok {
		c.dl.fixed = dl
	}
	op := &opened{c: c, target: t}
	op.stop = context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	fail := func(err error) (*opened, error) {
		op.stop()
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if t.directTLS {
		if err := c.handshake(ctx, s.tlsClientConfig(p.remote, true), true); err != nil {
			return fail(err)
		}
		op.secure = true
		op.certErr = verifyPeer(c.tls.ConnectionState().PeerCertificates, p.remote, s.cfg.Roots)
	}
	for {
		if err := c.write(header(p.local, p.remote, "")); err != nil {
			return fail(err)
		}
		h, err := c.reader.ReadHeader()
		if err != nil {
			return fail(fmt.Errorf("reading its stream header: %w", err))
		}
		if h.NS != xmpp.NSServer {
			return fail(fmt.Errorf("it answered with a %q stream, not a server stream", h.NS))
		}
		op.streamID = h.ID
		for _, a := range h.Attrs {
			if a.Name.Space == "xmlns" && a.Value == NSDialback {
				op.dbNS = true
			}
		}
		if h.Version == "" {
			// A pre-XMPP-1.0 server: no features, dialback only.
			op.features = xmpp.NewElement(xmpp.NSStream, "features")
			return op, nil
		}
		f, err := c.next()
		if err != nil {
			return fail(fmt.Errorf("reading its stream features: %w", err))
		}
		if !f.Is(xmpp.NSStream, "features") {
			return fail(fmt.Errorf("it sent <%s/> instead of its stream features", f.Local))
		}
		op.features = f
		if op.secure || f.Child(xmpp.NSTLS, "starttls") == nil {
			return op, nil
		}
		if err := c.write([]byte("<starttls xmlns='" + xmpp.NSTLS + "'/>")); err != nil {
			return fail(err)
		}
		el, err := c.next()
		if err != nil {
			return fail(err)
		}
		if !el.Is(xmpp.NSTLS, "proceed") {
			return fail(fmt.Errorf("it refused STARTTLS with <%s/>", el.Local))
		}
		if err := c.handshake(ctx, s.tlsClientConfig(p.remote, false), true); err != nil {
			return fail(err)
		}
		op.secure = true
		op.certErr = verifyPeer(c.tls.ConnectionState().PeerCertificates, p.remote, s.cfg.Roots)
	}
}

// offersDialback reports whether the peer accepts dialback on the stream.
func (o *opened) offersDialback() bool {
	return o.dbNS || o.features.Child(NSDialbackFeature, "dialback") != nil
}

// offersExternal reports whether the peer offers SASL EXTERNAL.
func (o *opened) offersExternal() bool {
	if m := o.features.Child(xmpp.NSSASL, "mechanisms"); m != nil {
		for _, c := range m.Elements() {
			if c.Local == "mechanism" && c.Text() == "EXTERNAL" {
				return true
			}
		}
	}
	return false
}

// offersBidi reports whether the peer offers bidirectional streams.
func (o *opened) offersBidi() bool {
	return o.features.Child(NSBidiFeature, "bidi") != nil
}

// errPolicy marks a refusal by this server's own policy.
type errPolicy struct{ msg string }

func (e *errPolicy) Error() string { return e.msg }

// authenticate authenticates p.local to the peer on an opened stream:
// SASL EXTERNAL when the peer offers it (it does when it accepts our
// certificate), else dialback. It enforces the TLS and certificate policy.
// Before, it asks for a bidirectional stream (XEP-0288) when the peer
// offers it and s2s.bidi is on.
func (s *Service) authenticate(op *opened, p pair) (method string, err error) {
	if !op.secure && s.cfg.RequireTLS {
		return "", &errPolicy{"it does not offer TLS and s2s.require_tls is on"}
	}
	if op.secure && op.certErr != nil && s.cfg.RequireValidCerts {
		return "", &errPolicy{fmt.Sprintf("its certificate is not valid for %s (%v) and s2s.require_valid_certificates is on", p.remote, op.certErr)}
	}
	c := op.c
	if s.cfg.Bidi && op.offersBidi() {
		if err := c.write([]byte("<bidi xmlns='" + NSBidi + "'/>")); err != nil {
			return "", err
		}
		op.bidi = true
	}
	if op.secure && op.offersExternal() {
		// An empty authorization identity ("="): the stream's 'from'.
		if err := c.write([]byte("<auth xmlns='" + xmpp.NSSASL + "' mechanism='EXTERNAL'>=</auth>")); err != nil {
			return "", err
		}
		el, err := c.next()
		if err != nil {
			return "", err
		}
		if el.Is(xmpp.NSSASL, "success") {
			c.reader.Reset(c.dl)
			if err := c.write(header(p.local, p.remote, "")); err != nil {
				return "", err
			}
			h, err := c.reader.ReadHeader()
			if err != nil {
				return "", err
			}
			op.streamID = h.ID
			if h.Version != "" {
				f, err := c.next()
				if err != nil {
					return "", err
				}
				op.features = f
			}
			return "SASL EXTERNAL", nil
		}
		s.log.Debug("the remote server refused our certificate for SASL EXTERNAL; trying dialback", "domain", p.remote, "answer", el.String())
	}
	if !op.offersDialback() {
		return "", errors.New("it offers no authentication this server can use (neither SASL EXTERNAL with our certificate nor dialback)")
	}
	key := dialbackKey(s.secret, p.remote, p.local, op.streamID)
	if err := c.write(dbElement("result", p.local, p.remote, "", "", key)); err != nil {
		return "", err
	}
	for {
		el, err := c.next()
		if err != nil {
			return "", err
		}
		if !el.Is(NSDialback, "result") {
			continue
		}
		switch el.Attr("type") {
		case "valid":
			return "dialback", nil
		case "invalid":
			return "", errors.New("it did not accept our dialback key (is the DNS record of " + p.local + " pointing at another server?)")
		default:
			return "", fmt.Errorf("dialback failed: %s", dialbackErrorText(el))
		}
	}
}

// dialbackErrorText describes a <db:result type='error'/> or
// <db:verify type='error'/>.
func dialbackErrorText(el *xmpp.Element) string {
	if e := el.Child("", "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Space == xmpp.NSStanzas && c.Local != "text" {
				if t := e.ChildText(xmpp.NSStanzas, "text"); t != "" {
					return c.Local + ": " + t
				}
				return c.Local
			}
		}
	}
	return "error without a condition"
}

// verifyKey asks remote's authoritative server whether key is the one it
// generated for its stream streamID to local (the dialback check of a
// receiving server). An error means the question could not be answered.
func (s *Service) verifyKey(ctx context.Context, local, remote, streamID, key string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NegotiateTimeout)
	defer cancel()
	p := pair{local: local, remote: remote}
	targets, err := lookupTargets(ctx, s.cfg.Resolver, s.cfg.Addresses, remote)
	if err != nil {
		return false, err
	}
	var errs []error
	for _, t := range targets {
		valid, err := s.verifyAt(ctx, p, t, streamID, key)
		if err == nil {
			return valid, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.addr(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return false, errors.Join(errs...)
}

func (s *Service) verifyAt(ctx context.Context, p pair, t target, streamID, key string) (bool, error) {
	op, err := s.openTarget(ctx, p, t)
	if err != nil {
		return false, err
	}
	if !op.secure && s.cfg.RequireTLS {
		op.close(nil)
		return false, &errPolicy{"it does not offer TLS and s2s.require_tls is on"}
	}
	if err := op.c.write(dbElement("verify", p.local, p.remote, streamID, "", key)); err != nil {
		op.close(nil)
		return false, err
	}
	for {
		el, err := op.c.next()
		if err != nil {
			op.close(nil)
			return false, err
		}
		if !el.Is(NSDialback, "verify") || el.Attr("id") != streamID {
			continue
		}
		op.close(nil)
		switch el.Attr("type") {
		case "valid":
			return true, nil
		case "invalid":
			return false, nil
		default:
			return false, fmt.Errorf("verification failed: %s", dialbackErrorText(el))
		}
	}
}

// decodeAuthzid decodes the initial response of SASL EXTERNAL: "=" or
// nothing is an empty authorization identity.
func decodeAuthzid(text string) (string, error) {
	if text == "" || text == "=" {
		return "", nil
	}
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
