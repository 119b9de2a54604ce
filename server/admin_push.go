package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/admin"
	"wren.im/wren/push/gateway"
	"wren.im/wren/storage"
)

// pushTestMargin is how much longer than one provider request the admin
// command waits for the outcome of test pushes: they may queue behind
// others first.
const pushTestMargin = 5 * time.Second

// pushGateway returns the running push gateway, or the failure an
// operator understands when it is disabled.
func (b backend) pushGateway() (*gateway.Gateway, error) {
	if b.s.gateway == nil {
		return nil, admin.ErrPushGatewayDisabled
	}
	return b.s.gateway, nil
}

// pushOwner resolves the account of a push command: a user name means a
// user of this server, a JID stands for itself (its bare form: owners of
// devices can be users of any server).
func (b backend) pushOwner(account string) (string, error) {
	if !strings.Contains(account, "@") {
		u, err := b.user(account)
		if err != nil {
			return "", err
		}
		return u.String(), nil
	}
	j, err := jid.Parse(account)
	if err != nil || j.Localpart() == "" {
		return "", fmt.Errorf("%w: %q is not an account (alice, or a bare JID such as alice@%s)", admin.ErrBadRequest, account, b.s.cfg.Domain)
	}
	return j.Bare().String(), nil
}

// PushLog implements admin.Backend.
func (b backend) PushLog(ctx context.Context, f admin.PushLogFilter) ([]admin.PushRecord, error) {
	gw, err := b.pushGateway()
	if err != nil {
		return nil, err
	}
	sf := storage.PushDeliveryFilter{DeviceID: f.DeviceID, Since: f.Since, Limit: f.Limit}
	if f.Owner != "" {
		if sf.Owner, err = b.pushOwner(f.Owner); err != nil {
			return nil, err
		}
	}
	recs, err := gw.Records(ctx, sf)
	if err != nil {
		return nil, err
	}
	out := make([]admin.PushRecord, len(recs))
	for i, r := range recs {
		out[i] = admin.PushRecord{
			ID:             r.ID,
			Time:           r.Time,
			Owner:          r.Owner,
			DeviceID:       r.DeviceID,
			Provider:       r.Provider,
			Outcome:        r.Outcome,
			ProviderID:     r.ProviderID,
			Reason:         r.Reason,
			Attempts:       r.Attempts,
			LatencySeconds: r.Latency.Seconds(),
			Important:      r.Important,
			Coalesced:      r.Coalesced,
		}
	}
	return out, nil
}

// PushDevices implements admin.Backend.
func (b backend) PushDevices(ctx context.Context, owner string) (admin.PushDeviceList, error) {
	gw, err := b.pushGateway()
	if err != nil {
		return admin.PushDeviceList{}, err
	}
	bare, err := b.pushOwner(owner)
	if err != nil {
		return admin.PushDeviceList{}, err
	}
	devs, err := gw.Devices(ctx, bare)
	if err != nil {
		return admin.PushDeviceList{}, err
	}
	list := admin.PushDeviceList{Owner: bare, Devices: make([]admin.PushDevice, len(devs))}
	for i, d := range devs {
		list.Devices[i] = pushDevice(d)
	}
	return list, nil
}

// PushTest implements admin.Backend: it waits for the first attempts at
// most one provider request (push_gateway.request_timeout) and a margin.
func (b backend) PushTest(ctx context.Context, owner string) (admin.PushTestReport, error) {
	gw, err := b.pushGateway()
	if err != nil {
		return admin.PushTestReport{}, err
	}
	bare, err := b.pushOwner(owner)
	if err != nil {
		return admin.PushTestReport{}, err
	}
	wait := b.s.cfg.PushGateway.RequestTimeout.Duration
	if wait <= 0 {
		wait = gateway.DefaultRequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, wait+pushTestMargin)
	defer cancel()
	results, err := gw.Test(ctx, bare)
	if err != nil {
		return admin.PushTestReport{}, fmt.Errorf("test pushes to %s: %w", bare, err)
	}
	report := admin.PushTestReport{Owner: bare, Results: make([]admin.PushTestResult, len(results))}
	for i, r := range results {
		report.Results[i] = admin.PushTestResult{
			Device:         pushDevice(r.Device),
			Outcome:        r.Outcome,
			ProviderID:     r.ProviderID,
			Reason:         r.Reason,
			LatencySeconds: r.Latency.Seconds(),
		}
	}
	b.s.log.Info("test pushes sent by an administrator", "owner", bare, "devices", len(results), "delivered", report.Delivered())
	return report, nil
}

// pushDevice describes a device for the admin socket, without its secret
// and with its token shortened.
func pushDevice(d storage.PushDevice) admin.PushDevice {
	return admin.PushDevice{
		Provider: d.Provider,
		DeviceID: d.DeviceID,
		MUC:      d.MUC,
		Topic:    d.Topic,
		Sandbox:  d.Sandbox,
		Token:    admin.ShortToken(d.Token),
		Created:  d.Created,
		Updated:  d.Updated,
	}
}
