package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"

	"wren.im/wren/config"
	"wren.im/wren/disco"
	"wren.im/wren/push/apns"
	"wren.im/wren/push/fcm"
	"wren.im/wren/push/gateway"
	"wren.im/wren/push/provider"
)

// buildPushGateway wires the built-in push gateway (app server) into the
// server: the providers that are configured, and the service at its domain.
func (s *Server) buildPushGateway() error {
	g := s.cfg.PushGateway
	if !g.Enabled {
		return nil
	}
	senders := map[string]provider.Sender{}
	if g.APNs.Configured() {
		sender, err := newAPNs(g.APNs)
		if err != nil {
			return fmt.Errorf("push_gateway.apns: %w", err)
		}
		senders[provider.APNs] = sender
	}
	if g.FCM.Configured() {
		sender, err := newFCM(g.FCM)
		if err != nil {
			return fmt.Errorf("push_gateway.fcm: %w", err)
		}
		senders[provider.FCM] = sender
	}
	gw, err := gateway.New(gateway.Config{
		Domain:          s.cfg.PushGatewayDomain(),
		QueueSize:       g.QueueSize,
		Workers:         g.Workers,
		MaxAttempts:     g.MaxAttempts,
		RetryBase:       g.RetryBase.Duration,
		RetryMax:        g.RetryMax.Duration,
		RequestTimeout:  g.RequestTimeout.Duration,
		RecordRetention: g.RecordRetention.Duration,
		APNsSandbox:     g.APNs.Environment == "development",
		Metrics:         s.metrics.PushGateway,
	}, s.router, s.store, senders, s.log.With("feature", "push_gateway"))
	if err != nil {
		return fmt.Errorf("push gateway: %w", err)
	}
	s.gateway = gw
	s.disco.AddItem(disco.Item{JID: s.cfg.PushGatewayDomain(), Name: "Push gateway"})
	if len(senders) == 0 {
		s.log.Warn("the push gateway runs without APNs or FCM credentials; phones cannot register with it until you set push_gateway.apns or push_gateway.fcm",
			"domain", s.cfg.PushGatewayDomain())
	}
	return nil
}

func caPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}

func newAPNs(c config.APNs) (provider.Sender, error) {
	pool, err := caPool(c.CAFile)
	if err != nil {
		return nil, err
	}
	// The environment is chosen per device (its registration's sandbox
	// flag, defaulting to push_gateway.apns.environment).
	env := apns.Auto
	return apns.New(apns.Config{
		AuthKeyFile:  c.KeyFile,
		KeyID:        c.KeyID,
		TeamID:       c.TeamID,
		CertFile:     c.CertFile,
		CertPassword: c.CertPassword,
		Topic:        c.Topic,
		Environment:  env,
		Endpoint:     c.Endpoint,
		RootCAs:      pool,
	})
}

func newFCM(c config.FCM) (provider.Sender, error) {
	pool, err := caPool(c.CAFile)
	if err != nil {
		return nil, err
	}
	return fcm.New(context.Background(), fcm.Config{
		CredentialsFile: c.CredentialsFile,
		ProjectID:       c.ProjectID,
		Endpoint:        c.Endpoint,
		RootCAs:         pool,
	})
}
