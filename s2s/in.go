package s2s

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// maxPendingVerifications caps the dialback checks one incoming stream
// may have running at once.
const maxPendingVerifications = 16

// inStream is a stream another server opened to us. Its goroutine reads
// and handles everything; writes (answers to dialback) are serialised by
// wmu, as they also come from the goroutines checking dialback keys.
type inStream struct {
	svc       *Service
	c         *conn
	directTLS bool
	log       *slog.Logger

	streamID  string
	peer      string // the 'from' of the peer's stream header
	local     string // the 'to' of the peer's stream header
	secure    bool
	peerCerts []*x509.Certificate
	saslDone  bool

	wmu       sync.Mutex
	closeOnce sync.Once
	closed    bool // under wmu

	mu      sync.Mutex
	authed  map[string]string // remote domain -> how it was authenticated
	pending map[string]bool   // remote domains being verified
	routes  map[pair]bool     // (local, remote) pairs authenticated, the peer told so
	bidi    bool              // the peer asked for a bidirectional stream (XEP-0288)
	checks  sync.WaitGroup

	done chan struct{} // closed when the stream has ended
}

func newInStream(s *Service, raw net.Conn, directTLS bool) *inStream {
	return &inStream{
		svc:       s,
		c:         newConn(raw, s.preAuthLimits()),
		directTLS: directTLS,
		log:       s.log.With("peer_addr", raw.RemoteAddr().String()),
		authed:    map[string]string{},
		pending:   map[string]bool{},
		routes:    map[pair]bool{},
		done:      make(chan struct{}),
	}
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// streams returns the remote domains authenticated on the stream.
func (in *inStream) streams() []Stream {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]Stream, 0, len(in.authed))
	for d, how := range in.authed {
		out = append(out, Stream{Local: in.local, Remote: d, Auth: how, Bidi: in.isBidiFor(d)})
	}
	slices.SortFunc(out, func(a, b Stream) int { return strings.Compare(a.Remote, b.Remote) })
	return out
}

func (in *inStream) isAuthed(domain string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.authed[domain]
	return ok
}

// send writes raw XML to the peer.
func (in *inStream) send(b []byte) error {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	if in.closed {
		return net.ErrClosed
	}
	return in.c.write(b)
}

// close ends the stream with a stream error (nil for a plain close).
func (in *inStream) close(se *xmpp.StreamError) {
	in.closeOnce.Do(func() {
		in.wmu.Lock()
		in.closed = true
		in.c.writeClose(se)
		in.wmu.Unlock()
		in.c.dl.stopReads()
	})
}

// serve runs the stream until it ends.
func (in *inStream) serve(ctx context.Context) {
	defer close(in.done)
	defer in.svc.unregisterBidi(in)
	cfg := &in.svc.cfg
	in.c.dl.fixed = time.Now().Add(cfg.NegotiateTimeout)
	stop := context.AfterFunc(ctx, func() {
		in.close(xmpp.NewStreamError(xmpp.StreamSystemShutdown, "the server is shutting down"))
	})
	defer stop()
	err := in.run(ctx)
	switch se, ok := xmpp.AsStreamError(err); {
	case ok:
		in.log.Info("closing stream from remote server", "domain", in.peer, "condition", se.Condition, "reason", se.Text)
		in.close(se)
	case err == nil || isNetClosed(err):
		in.close(nil)
	case isTimeout(err):
		if in.c.dl.fixed.IsZero() {
			in.close(xmpp.NewStreamError(xmpp.StreamConnectionTimeout, "nothing received for %s", cfg.IdleTimeout))
		} else {
			in.log.Info("remote server did not finish setting up its stream in time", "domain", in.peer, "timeout", cfg.NegotiateTimeout)
			in.close(xmpp.NewStreamError(xmpp.StreamConnectionTimeout, "stream not set up within %s", cfg.NegotiateTimeout))
		}
	default:
		in.log.Info("stream from remote server failed", "domain", in.peer, "err", err)
		in.close(nil)
	}
	in.checks.Wait()
}

// run negotiates the stream, then handles dialback and stanzas.
func (in *inStream) run(ctx context.Context) error {
	c := in.c
	if in.directTLS {
		if err := in.startTLS(ctx); err != nil {
			return err
		}
	}
	var first *xmpp.Element
negotiation:
	for {
		h, err := c.reader.ReadHeader()
		if err != nil {
			if se, ok := xmpp.AsStreamError(err); ok {
				in.sendHeader("", "")
				return se
			}
			return err
		}
		if err := in.openStream(h); err != nil {
			return err
		}
		if h.Version == "" {
			// A pre-XMPP-1.0 server: no features, dialback only.
			break
		}
		features := xmpp.AppendStreamElement(nil, in.features())
		if in.saslDone {
			// The features of the stream restarted after SASL tell the
			// peer it may send stanzas: from now on this direction is
			// ready for them too.
			if err := in.sendReady(features, pair{local: in.local, remote: in.peer}); err != nil {
				return err
			}
			break
		}
		if err := in.send(features); err != nil {
			return err
		}
		for {
			el, err := c.next()
			if err != nil {
				return err
			}
			switch {
			case el.Is(xmpp.NSTLS, "starttls"):
				if in.secure {
					return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "TLS is already established")
				}
				if err := in.send([]byte("<proceed xmlns='" + xmpp.NSTLS + "'/>")); err != nil {
					return err
				}
				if err := in.startTLS(ctx); err != nil {
					return err
				}
				continue negotiation
			case el.Is(NSBidi, "bidi"):
				if err := in.requestBidi(); err != nil {
					return err
				}
			case el.Is(xmpp.NSSASL, "auth"):
				ok, err := in.external(el)
				if err != nil {
					return err
				}
				if ok {
					c.reader.Reset(c.dl)
					continue negotiation
				}
			default:
				first = el
				break negotiation
			}
		}
	}
	c.dl.fixed = time.Time{}
	c.dl.idle = in.svc.cfg.IdleTimeout
	c.reader.SetLimits(in.svc.cfg.Limits)
	for el := first; ; {
		if el != nil {
			if err := in.handle(ctx, el); err != nil {
				return err
			}
		}
		var err error
		if el, err = c.next(); err != nil {
			return err
		}
	}
}

func (in *inStream) startTLS(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := in.c.handshake(hctx, in.svc.tlsServerConfig(), false); err != nil {
		in.log.Info("TLS handshake with remote server failed", "err", err)
		return err
	}
	in.secure = true
	in.peerCerts = in.c.tls.ConnectionState().PeerCertificates
	return nil
}

func (in *inStream) sendHeader(from, to string) {
	if from == "" {
		from = in.svc.cfg.Domain
	}
	in.send(header(from, to, in.streamID))
}

// openStream answers the peer's stream header.
func (in *inStream) openStream(h xmpp.StreamHeader) error {
	in.streamID = randomID()
	if h.From != "" {
		if j, err := jid.Parse(h.From); err == nil {
			in.peer = j.Domainpart()
		}
	}
	local := in.svc.cfg.Domain
	if h.To != "" {
		if j, err := jid.Parse(h.To); err == nil {
			local = j.Domainpart()
		}
	}
	in.mu.Lock()
	in.local = local
	in.mu.Unlock()
	if err := in.send(header(local, in.peer, in.streamID)); err != nil {
		return err
	}
	if h.NS != xmpp.NSServer {
		return xmpp.NewStreamError(xmpp.StreamInvalidNamespace, "server streams use the jabber:server namespace")
	}
	if h.To != "" && !in.svc.isLocal(local) {
		return xmpp.NewStreamError(xmpp.StreamHostUnknown, "this server does not serve %s", h.To)
	}
	if in.peer != "" && !in.svc.permitted(in.peer) {
		return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "this server does not federate with %s", in.peer)
	}
	return nil
}

// certValidFor reports whether the peer's certificate is valid for domain.
func (in *inStream) certValidFor(domain string) error {
	if !in.secure {
		return fmt.Errorf("the stream is not encrypted")
	}
	return verifyPeer(in.peerCerts, domain, in.svc.cfg.Roots)
}

// features returns the stream features for the current stream.
func (in *inStream) features() *xmpp.Element {
	f := xmpp.NewElement(xmpp.NSStream, "features")
	if in.saslDone {
		return f
	}
	if !in.secure {
		st := f.AddChild(xmpp.NSTLS, "starttls")
		if in.svc.cfg.RequireTLS {
			st.AddChild(xmpp.NSTLS, "required")
		}
	}
	if in.secure && in.peer != "" && in.certValidFor(in.peer) == nil {
		f.AddChild(xmpp.NSSASL, "mechanisms").AddChild(xmpp.NSSASL, "mechanism").AppendText("EXTERNAL")
	}
	if in.svc.cfg.Bidi && (in.secure || !in.svc.cfg.RequireTLS) {
		f.AddChild(NSBidiFeature, "bidi")
	}
	f.AddChild(NSDialbackFeature, "dialback").AddChild(NSDialbackFeature, "errors")
	return f
}

// external handles <auth mechanism='EXTERNAL'/> (XEP-0178): the peer is
// authenticated as the domain its certificate is valid for.
func (in *inStream) external(el *xmpp.Element) (bool, error) {
	fail := func(cond, text string) (bool, error) {
		f := xmpp.NewElement(xmpp.NSSASL, "failure")
		f.AddChild(xmpp.NSSASL, cond)
		if text != "" {
			f.AddChild(xmpp.NSSASL, "text").AppendText(text)
		}
		in.log.Info("remote server failed SASL EXTERNAL", "domain", in.peer, "reason", text)
		return false, in.send(f.AppendXML(nil, ""))
	}
	if el.Attr("mechanism") != "EXTERNAL" {
		return fail("invalid-mechanism", "only EXTERNAL is offered")
	}
	if !in.secure || in.peer == "" {
		return fail("encryption-required", "use STARTTLS and say who you are in the stream header first")
	}
	authzid, err := decodeAuthzid(el.Text())
	if err != nil {
		return fail("incorrect-encoding", "")
	}
	domain := in.peer
	if authzid != "" {
		j, err := jid.Parse(authzid)
		if err != nil || j.Domainpart() != in.peer || j.Localpart() != "" || j.Resourcepart() != "" {
			return fail("invalid-authzid", "the authorization identity must be the stream's 'from'")
		}
	}
	if err := in.certValidFor(domain); err != nil {
		return fail("not-authorized", "the certificate is not valid for "+domain+": "+err.Error())
	}
	if err := in.send([]byte("<success xmlns='" + xmpp.NSSASL + "'/>")); err != nil {
		return false, err
	}
	in.saslDone = true
	in.mu.Lock()
	in.authed[domain] = "SASL EXTERNAL"
	in.mu.Unlock()
	in.log.Info("remote server authenticated", "domain", domain, "auth", "SASL EXTERNAL")
	return true, nil
}

// handle processes one element after negotiation.
func (in *inStream) handle(ctx context.Context, el *xmpp.Element) error {
	if !in.secure && in.svc.cfg.RequireTLS {
		return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "this server requires STARTTLS first")
	}
	switch {
	case el.Is(NSDialback, "result"):
		return in.dialbackResult(ctx, el)
	case el.Is(NSDialback, "verify"):
		return in.dialbackVerify(el)
	case el.Is(NSBidi, "bidi"):
		return in.requestBidi()
	case el.Space == xmpp.NSServer && el.IsStanza():
		return in.stanza(ctx, el)
	case el.Is(xmpp.NSTLS, "starttls"), el.Is(xmpp.NSSASL, "auth"):
		return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "<%s/> must come right after the stream features", el.Local)
	}
	return xmpp.NewStreamError(xmpp.StreamUnsupportedStanza, "<%s xmlns='%s'/> is not a stanza", el.Local, el.Space)
}

// dbError builds <db:result type='error'/> or <db:verify type='error'/>
// with a stanza error condition (XEP-0220 §2.4).
func dbError(local, from, to, id, cond, text string) []byte {
	el := xmpp.NewElement(NSDialback, local, "from", from, "to", to, "id", id, "type", "error")
	e := xmpp.NewStanzaError(cond, text).Element()
	e.Space = xmpp.NSServer
	el.Append(e)
	return dbPrefixed(el)
}

// dialbackResult handles a request to authenticate a domain by dialback
// (the peer is the originating server, we the receiving one).
func (in *inStream) dialbackResult(ctx context.Context, el *xmpp.Element) error {
	fromJ, err1 := jid.Parse(el.Attr("from"))
	toJ, err2 := jid.Parse(el.Attr("to"))
	if err1 != nil || err2 != nil || fromJ.Localpart() != "" || fromJ.Resourcepart() != "" {
		return xmpp.NewStreamError(xmpp.StreamImproperAddressing, "<db:result/> needs the domains in 'from' and 'to'")
	}
	from, to := fromJ.Domainpart(), toJ.Domainpart()
	key := el.Text()
	reply := func(typ string) error { return in.send(dbElement("result", to, from, "", typ, "")) }
	replyValid := func() error {
		return in.sendReady(dbElement("result", to, from, "", "valid", ""), pair{local: to, remote: from})
	}
	if !in.svc.isLocal(to) {
		return in.send(dbError("result", to, from, "", xmpp.CondItemNotFound, "this server does not serve "+to))
	}
	if !in.svc.permitted(from) {
		in.log.Info("refused dialback from a domain this server does not federate with", "domain", from)
		return in.send(dbError("result", to, from, "", xmpp.CondPolicyViolation, "this server does not federate with "+from))
	}
	if in.isAuthed(from) {
		return replyValid()
	}
	certErr := in.certValidFor(from)
	if certErr == nil {
		// The certificate proves the domain already (XEP-0344): no need
		// to ask its authoritative server.
		in.authorize(from, "dialback with a valid certificate")
		return replyValid()
	}
	if in.svc.cfg.RequireValidCerts {
		in.log.Warn("refused remote server: its certificate is not valid for its domain and s2s.require_valid_certificates is on",
			"domain", from, "err", certErr)
		return in.send(dbError("result", to, from, "", xmpp.CondNotAuthorized, "this server requires a certificate valid for "+from))
	}
	in.mu.Lock()
	switch {
	case in.pending[from]:
		in.mu.Unlock()
		return nil
	case len(in.pending) >= maxPendingVerifications:
		in.mu.Unlock()
		return xmpp.NewStreamError(xmpp.StreamPolicyViolation, "too many dialback requests at once")
	}
	in.pending[from] = true
	in.checks.Add(1)
	in.mu.Unlock()
	go func() {
		defer in.checks.Done()
		valid, err := in.svc.verifyKey(ctx, to, from, in.streamID, key)
		in.mu.Lock()
		delete(in.pending, from)
		in.mu.Unlock()
		switch {
		case err != nil:
			in.log.Warn("cannot check the dialback key of a remote server: its authoritative server is unreachable", "domain", from, "err", err)
			in.send(dbError("result", to, from, "", xmpp.CondRemoteServerNotFound, "cannot reach "+from+" to check the key"))
		case !valid:
			in.log.Warn("remote server sent a dialback key its domain's server does not confirm; refusing it", "domain", from)
			reply("invalid")
		default:
			in.authorize(from, "dialback")
			replyValid()
		}
	}()
	return nil
}

func (in *inStream) authorize(domain, how string) {
	in.mu.Lock()
	in.authed[domain] = how
	in.mu.Unlock()
	in.log.Info("remote server authenticated", "domain", domain, "auth", how)
}

// dialbackVerify answers whether a key is one we generated (the peer is a
// receiving server checking one of our outgoing streams).
func (in *inStream) dialbackVerify(el *xmpp.Element) error {
	from, to, id := el.Attr("from"), el.Attr("to"), el.Attr("id")
	valid := in.svc.isLocal(to) && checkDialbackKey(in.svc.secret, from, to, id, el.Text())
	typ := "invalid"
	if valid {
		typ = "valid"
	} else {
		in.log.Info("a remote server asked about a dialback key this server did not generate", "domain", from, "for", to)
	}
	return in.send(dbElement("verify", to, from, id, typ, ""))
}

// stanza routes a stanza from the peer after checking its addresses.
func (in *inStream) stanza(ctx context.Context, el *xmpp.Element) error {
	in.mu.Lock()
	n := len(in.authed)
	in.mu.Unlock()
	if n == 0 {
		return xmpp.NewStreamError(xmpp.StreamNotAuthorized, "authenticate (SASL EXTERNAL or dialback) before sending stanzas")
	}
	from, err := jid.Parse(el.Attr("from"))
	if err != nil || !in.isAuthed(from.Domainpart()) {
		return xmpp.NewStreamError(xmpp.StreamInvalidFrom, "'from' %q is not a domain authenticated on this stream", el.Attr("from"))
	}
	to, err := in.svc.recipient(el)
	if err != nil {
		return err
	}
	toClientNS(el, xmpp.NSServer)
	in.svc.cfg.Router.Route(ctx, &router.Stanza{El: el, From: from, To: to})
	return nil
}
