package gateway

import (
	"context"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"

	"wren.im/wren/adhoc"
	"wren.im/wren/push/provider"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Command nodes. The register and provider-specific unregister commands
// are those of the p2 app server, which Conversations speaks.
const (
	CmdRegisterFCM    = "register-push-fcm"
	CmdRegisterAPNs   = "register-push-apns"
	CmdUnregister     = "unregister-push"
	CmdUnregisterFCM  = "unregister-push-fcm"
	CmdUnregisterAPNs = "unregister-push-apns"
)

// Limits of the registration fields.
const (
	maxTokenLen    = 4096
	maxDeviceIDLen = 256
	maxTopicLen    = 256
)

func (g *Gateway) addCommands() {
	g.cmds.Add(adhoc.Command{
		Node: CmdRegisterFCM, Name: "Register an Android device (FCM)",
		Hidden:  !g.Configured(provider.FCM),
		Form:    g.registerForm(provider.FCM),
		Execute: g.register(provider.FCM),
	})
	g.cmds.Add(adhoc.Command{
		Node: CmdRegisterAPNs, Name: "Register an iOS device (APNs)",
		Hidden:  !g.Configured(provider.APNs),
		Form:    g.registerForm(provider.APNs),
		Execute: g.register(provider.APNs),
	})
	g.cmds.Add(adhoc.Command{
		Node: CmdUnregister, Name: "Unregister a device",
		Form:    unregisterForm,
		Execute: g.unregister(provider.APNs, provider.FCM),
	})
	g.cmds.Add(adhoc.Command{
		Node: CmdUnregisterFCM, Name: "Unregister an Android device (FCM)", Hidden: true,
		Form:    unregisterForm,
		Execute: g.unregister(provider.FCM),
	})
	g.cmds.Add(adhoc.Command{
		Node: CmdUnregisterAPNs, Name: "Unregister an iOS device (APNs)", Hidden: true,
		Form:    unregisterForm,
		Execute: g.unregister(provider.APNs),
	})
}

func (g *Gateway) registerForm(p string) func(context.Context, jid.JID) *adhoc.Form {
	return func(context.Context, jid.JID) *adhoc.Form {
		if !g.Configured(p) {
			return nil // Execute explains why
		}
		f := &adhoc.Form{
			Type:  adhoc.FormTypeForm,
			Title: "Register a device for push notifications (" + providerName(p) + ")",
			Instructions: "The app fills these in. The answer gives the node and secret to enable " +
				"push notifications with on your server (XEP-0357).",
			Fields: []adhoc.Field{
				{Var: "token", Type: adhoc.FieldTextSingle, Label: "Device token", Required: true},
				{Var: "device-id", Type: adhoc.FieldTextSingle, Label: "Device id (stays the same when the token changes)", Required: true},
				{Var: "muc", Type: adhoc.FieldJIDSingle, Label: "Group chat (only for a group chat's own notifications)"},
			},
		}
		if p == provider.APNs {
			sandbox := "0"
			if g.cfg.APNsSandbox {
				sandbox = "1"
			}
			f.Fields = append(f.Fields,
				adhoc.Field{Var: "topic", Type: adhoc.FieldTextSingle, Label: "App bundle id (empty: the gateway's)"},
				adhoc.Field{Var: "sandbox", Type: adhoc.FieldBoolean, Label: "Development (sandbox) build", Values: []string{sandbox}},
			)
		}
		return f
	}
}

func unregisterForm(context.Context, jid.JID) *adhoc.Form {
	return &adhoc.Form{
		Type:  adhoc.FormTypeForm,
		Title: "Unregister a device from push notifications",
		Fields: []adhoc.Field{
			{Var: "device-id", Type: adhoc.FieldTextSingle, Label: "Device id", Required: true},
			{Var: "muc", Type: adhoc.FieldJIDSingle, Label: "Group chat (empty: every registration of the device)"},
		},
	}
}

// badRequest is the error of a form with a missing or wrong field.
func badRequest(format string, args ...any) error {
	return xmpp.NewStanzaError(xmpp.CondBadRequest, fmt.Sprintf(format, args...))
}

// deviceID reads the device id: device-id, or p2's android-id.
func deviceID(f *adhoc.Form) string {
	if id := f.Value("device-id"); id != "" {
		return id
	}
	return f.Value("android-id")
}

// mucField reads the optional group chat JID (a bare JID).
func mucField(f *adhoc.Form) (string, error) {
	v := f.Value("muc")
	if v == "" {
		return "", nil
	}
	j, err := jid.Parse(v)
	if err != nil || j.Resourcepart() != "" {
		return "", badRequest("muc must be the bare JID of a group chat, not %q", v)
	}
	return j.String(), nil
}

func (g *Gateway) register(p string) func(context.Context, jid.JID, *adhoc.Form) (adhoc.Result, error) {
	return func(ctx context.Context, from jid.JID, f *adhoc.Form) (adhoc.Result, error) {
		if !g.Configured(p) {
			text := fmt.Sprintf("The operator of %s has not configured %s, so this gateway cannot register such devices.",
				g.jid.String(), providerName(p))
			return adhoc.Result{Notes: []adhoc.Note{{Type: adhoc.NoteError, Text: text}}},
				xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented, text)
		}
		if f == nil {
			return adhoc.Result{}, adhoc.ErrBadPayload()
		}
		token, id := f.Value("token"), deviceID(f)
		switch {
		case token == "" || id == "":
			return adhoc.Result{}, badRequest("the form needs a token and a device-id (or android-id)")
		case len(token) > maxTokenLen:
			return adhoc.Result{}, badRequest("the token is longer than %d bytes", maxTokenLen)
		case len(id) > maxDeviceIDLen:
			return adhoc.Result{}, badRequest("the device id is longer than %d bytes", maxDeviceIDLen)
		}
		muc, err := mucField(f)
		if err != nil {
			return adhoc.Result{}, err
		}
		dev := storage.PushDevice{
			Owner: from.Bare().String(), Provider: p, DeviceID: id, MUC: muc, Token: token,
			Node: randomNode(), Secret: randomSecret(), Updated: g.now(),
		}
		if p == provider.APNs {
			dev.Topic = f.Value("topic")
			if len(dev.Topic) > maxTopicLen {
				return adhoc.Result{}, badRequest("the topic is longer than %d bytes", maxTopicLen)
			}
			dev.Sandbox = g.cfg.APNsSandbox
			if v := f.Value("sandbox"); v != "" {
				if dev.Sandbox, err = adhoc.ParseBool(v); err != nil {
					return adhoc.Result{}, badRequest("sandbox: %v", err)
				}
			}
		}
		stored, err := g.store.PutPushDevice(ctx, dev, g.cfg.MaxDevices)
		if errors.Is(err, storage.ErrExists) {
			// A node collision (128 random bits): draw again.
			dev.Node = randomNode()
			stored, err = g.store.PutPushDevice(ctx, dev, g.cfg.MaxDevices)
		}
		switch {
		case errors.Is(err, storage.ErrQuotaExceeded):
			return adhoc.Result{}, xmpp.NewStanzaError(xmpp.CondNotAllowed,
				fmt.Sprintf("you have registered %d devices, the most this gateway allows; unregister one first", g.cfg.MaxDevices))
		case err != nil:
			g.log.Error("cannot store a device registration", "owner", dev.Owner, "provider", p, "err", err)
			return adhoc.Result{}, &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondInternalServerError,
				Text: "the push gateway cannot write its database; try again later"}
		}
		g.log.Info("push device registered", "owner", stored.Owner, "provider", p, "device", id, "muc", muc,
			"new", stored.Created.Equal(stored.Updated))
		res := &adhoc.Form{Type: adhoc.FormTypeResult}
		res.Set("jid", adhoc.FieldJIDSingle, g.jid.String())
		res.Set("node", adhoc.FieldTextSingle, stored.Node)
		res.Set("secret", adhoc.FieldTextPriv, stored.Secret)
		return adhoc.Result{Form: res}, nil
	}
}

func (g *Gateway) unregister(providers ...string) func(context.Context, jid.JID, *adhoc.Form) (adhoc.Result, error) {
	return func(ctx context.Context, from jid.JID, f *adhoc.Form) (adhoc.Result, error) {
		if f == nil {
			return adhoc.Result{}, adhoc.ErrBadPayload()
		}
		id := deviceID(f)
		if id == "" {
			return adhoc.Result{}, badRequest("the form needs a device-id (or android-id)")
		}
		muc, err := mucField(f)
		if err != nil {
			return adhoc.Result{}, err
		}
		// p2 names a group chat registration by a "channel" of its own;
		// Wren knows them by their group chat.
		if ch := f.Value("channel"); ch != "" && muc == "" {
			muc = ch
		}
		owner := from.Bare().String()
		devs, err := g.store.PushDevices(ctx, owner)
		if err != nil {
			g.log.Error("cannot list the devices of an owner", "owner", owner, "err", err)
			return adhoc.Result{}, &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondInternalServerError,
				Text: "the push gateway cannot read its database; try again later"}
		}
		removed := 0
		for _, d := range devs {
			if d.DeviceID != id || (muc != "" && d.MUC != muc) || !contains(providers, d.Provider) {
				continue
			}
			ok, err := g.store.DeletePushDevice(ctx, d.Node, "")
			if err != nil {
				g.log.Error("cannot remove a device registration", "owner", owner, "device", id, "err", err)
				return adhoc.Result{}, &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondInternalServerError,
					Text: "the push gateway cannot write its database; try again later"}
			}
			if ok {
				removed++
			}
		}
		if removed == 0 {
			return adhoc.Result{}, xmpp.NewStanzaError(xmpp.CondItemNotFound, "you have no such device registered here")
		}
		g.log.Info("push device unregistered", "owner", owner, "device", id, "registrations", removed)
		return adhoc.Result{Notes: []adhoc.Note{{Type: adhoc.NoteInfo,
			Text: fmt.Sprintf("Removed %d registration(s) of device %s.", removed, id)}}}, nil
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
