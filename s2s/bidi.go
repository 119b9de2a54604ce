package s2s

import (
	"context"
	"net"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// Bidirectional streams (XEP-0288). The receiving server offers
// <bidi xmlns='urn:xmpp:features:bidi'/> in the features of an encrypted
// stream (or of any stream when TLS is not required); the initiating
// server answers <bidi xmlns='urn:xmpp:bidi'/> before it authenticates.
// The stream then carries stanzas both ways:
//
//   - The receiving server sends over it, for each (local, remote) pair the
//     initiator authenticated (the stream's 'to' and 'from' for SASL
//     EXTERNAL; the inverse of each dialback request), once the initiator
//     learnt of the success, and only while it has no outgoing stream of
//     its own for that pair. It registers the stream before it writes the
//     success, under the stream's write lock, so that no stanza can precede
//     the answer and no second connection is opened meanwhile.
//   - The initiating server accepts, on its outgoing stream, stanzas from
//     the domain it opened the stream to. That server's identity rests on
//     what the outgoing stream already checked: Wren reached it through
//     the DNS records (or the configured address) of that domain, as
//     dialback's own verification does, and, with
//     s2s.require_valid_certificates, through a certificate valid for it.
const (
	NSBidi        = "urn:xmpp:bidi"
	NSBidiFeature = "urn:xmpp:features:bidi"
)

// registerBidi records in as the stream to send p's stanzas over. The
// latest stream wins: it is the one most likely to be alive.
func (s *Service) registerBidi(in *inStream, p pair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.bidi[p] == in {
		return
	}
	s.bidi[p] = in
	in.log.Info("remote server's stream is bidirectional: stanzas to it use that stream when this server has none of its own",
		"local", p.local, "remote", p.remote)
}

// unregisterBidi forgets the pairs registered for in.
func (s *Service) unregisterBidi(in *inStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, other := range s.bidi {
		if other == in {
			delete(s.bidi, p)
		}
	}
}

// requestBidi handles <bidi xmlns='urn:xmpp:bidi'/> from the initiating
// server: from now on every pair it authenticates (and those it has) may
// carry stanzas back.
func (in *inStream) requestBidi() error {
	cfg := &in.svc.cfg
	switch {
	case !cfg.Bidi:
		in.log.Debug("ignoring a request for a bidirectional stream: s2s.bidi is off", "domain", in.peer)
		return nil
	case !in.secure && cfg.RequireTLS:
		return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "this server requires STARTTLS first")
	}
	in.mu.Lock()
	in.bidi = true
	routes := make([]pair, 0, len(in.routes))
	for p := range in.routes {
		routes = append(routes, p)
	}
	in.mu.Unlock()
	in.log.Debug("remote server asked for a bidirectional stream (XEP-0288)", "domain", in.peer)
	for _, p := range routes {
		in.svc.registerBidi(in, p)
	}
	return nil
}

// sendReady writes b, the answer that tells the peer it is authenticated
// for p (remote speaking to local), and makes the stream available for
// stanzas from local to remote when the peer asked for bidirectional
// traffic. Both happen under the write lock, so that the answer is the
// first thing the peer reads about p.
func (in *inStream) sendReady(b []byte, p pair) error {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	if in.closed {
		return net.ErrClosed
	}
	in.mu.Lock()
	in.routes[p] = true
	bidi := in.bidi
	in.mu.Unlock()
	if bidi {
		in.svc.registerBidi(in, p)
	}
	return in.c.write(b)
}

// isBidiFor reports whether stanzas to remote may go over the stream.
// in.mu must be held.
func (in *inStream) isBidiFor(remote string) bool {
	if !in.bidi {
		return false
	}
	for p := range in.routes {
		if p.remote == remote {
			return true
		}
	}
	return false
}

// writeStanzas writes stanzas for the peer on a bidirectional incoming
// stream. It returns how many were handed to the connection before an
// error: after a failed flush they all count as written, as data partly
// sent cannot be told apart.
func (in *inStream) writeStanzas(batch []*router.Stanza) (int, error) {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	if in.closed {
		return 0, net.ErrClosed
	}
	c := in.c
	c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	var buf []byte
	for i, st := range batch {
		buf = appendStanza(buf[:0], st.El)
		if _, err := c.writer.Write(buf); err != nil {
			return i, err
		}
	}
	if err := c.writer.Flush(); err != nil {
		return len(batch), err
	}
	// Stanzas sent are activity too: push back the idle deadline, which
	// otherwise only counts what the peer sends. Under wmu, this cannot
	// come after close has stopped the reads.
	c.raw.SetReadDeadline(time.Now().Add(in.svc.cfg.IdleTimeout))
	return len(batch), nil
}

// runVia is the goroutine of an outgoing stream that uses in, a
// bidirectional stream the peer opened: it writes what is queued until
// that stream ends, then what is left goes through a new stream.
func (o *outStream) runVia(ctx context.Context, in *inStream) {
	o.log.Debug("sending over the bidirectional stream the remote server opened")
	for {
		select {
		case <-o.wake:
			batch := o.take()
			if len(batch) == 0 {
				continue
			}
			n, err := in.writeStanzas(batch)
			if err != nil {
				o.log.Info("writing to remote server over its bidirectional stream failed; that stream is closed", "err", err)
				// Closed first, so that it cannot be registered again:
				// the stanzas left go through another stream.
				in.close(nil)
				o.svc.unregisterBidi(in)
				o.reroute(ctx, append(batch[n:], o.die()...))
				return
			}
		case <-in.done:
			o.reroute(ctx, o.die())
			return
		case <-ctx.Done():
			for _, st := range o.die() {
				o.svc.bounce(context.Background(), st, xmpp.CondRemoteServerTimeout, "the server is shutting down")
			}
			return
		}
	}
}

// received routes a stanza the peer sent on our bidirectional outgoing
// stream. Its 'from' must be at the domain the stream was opened to (the
// only one the peer may speak for here), its 'to' at this server.
func (o *outStream) received(el *xmpp.Element) error {
	from, err := jid.Parse(el.Attr("from"))
	if err != nil || from.Domainpart() != o.pair.remote {
		return xmpp.NewStreamError(xmpp.StreamInvalidFrom, "'from' %q is not at %s, the domain this stream was opened to", el.Attr("from"), o.pair.remote)
	}
	to, err := o.svc.recipient(el)
	if err != nil {
		return err
	}
	o.lastIn.Store(time.Now().UnixNano())
	toClientNS(el, xmpp.NSServer)
	o.svc.cfg.Router.Route(o.svc.ctx, &router.Stanza{El: el, From: from, To: to})
	return nil
}

// recipient checks the 'to' of a stanza from another server: present,
// valid and served here.
func (s *Service) recipient(el *xmpp.Element) (jid.JID, error) {
	if el.Attr("to") == "" {
		return jid.JID{}, xmpp.NewStreamError(xmpp.StreamImproperAddressing, "stanzas between servers need a 'to'")
	}
	to, err := jid.Parse(el.Attr("to"))
	if err != nil {
		return jid.JID{}, xmpp.NewStreamError(xmpp.StreamImproperAddressing, "'to' %q is not a valid address", el.Attr("to"))
	}
	if !s.isLocal(to.Domainpart()) {
		return jid.JID{}, xmpp.NewStreamError(xmpp.StreamHostUnknown, "this server does not serve %s", to.Domainpart())
	}
	return to, nil
}
