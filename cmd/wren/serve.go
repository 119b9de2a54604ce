package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"wren.im/wren/config"
	"wren.im/wren/server"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		args:    "[options]",
		summary: "run the XMPP server",
		help: `Runs the server until it receives SIGINT (Ctrl-C) or SIGTERM, then shuts
down gracefully. SIGHUP reloads the configuration and the certificate
without dropping connections, like 'wren reload'. Without --config the
built-in defaults are used: domain localhost, data in ./data, clients on
127.0.0.1 only. Options given here override the configuration file (also
at a reload); an empty address ("") disables that listener. Run
'wren config example' for every setting.`,
		run: runServe,
	}
}

func runServe(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	addListenerFlags(cf)
	cf.override("log-level", "log at `LEVEL`: debug, info, warn or error (overrides log.level)",
		func(cfg *config.Config, v string) { cfg.Log.Level = v })
	positional, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q", positional[0])
	}
	return serve(ctx, c, cmd, cf)
}

// addListenerFlags registers --c2s, --c2s-tls, --metrics and --s2s.
func addListenerFlags(cf *configFlags) {
	cf.override("c2s", "accept client connections (STARTTLS) on `ADDR` host:port; \"\" disables (overrides c2s.listen)",
		func(cfg *config.Config, v string) { cfg.C2S.Listen = v })
	cf.override("c2s-tls", "accept direct TLS client connections on `ADDR` host:port; \"\" disables (overrides c2s.direct_tls)",
		func(cfg *config.Config, v string) { cfg.C2S.DirectTLS = v })
	cf.override("metrics", "serve Prometheus metrics and /healthz on `ADDR` host:port; \"\" disables (overrides metrics.listen)",
		func(cfg *config.Config, v string) { cfg.Metrics.Listen = v })
	cf.override("s2s", "accept connections from other servers (federation, STARTTLS) on `ADDR` host:port; \"\" turns federation off (overrides s2s.listen)",
		func(cfg *config.Config, v string) { cfg.S2S.Listen = v })
}

// serve runs the server with the configuration cf loads.
func serve(ctx context.Context, c *cli, cmd *command, cf *configFlags) int {
	cfg, err := cf.load()
	if err != nil {
		return failure(c, cmd, err)
	}
	logger, level, err := newLogger(cfg.Log, c.stderr)
	if err != nil {
		return failure(c, cmd, err)
	}
	logger.Info("configuration loaded", "config", cf.source())
	s, err := server.New(ctx, cfg, logger, server.WithConfigLoader(cf.source(), cf.load), server.WithLogLevel(level))
	if err != nil {
		return failure(c, cmd, err)
	}
	stopHUP := reloadOnSIGHUP(ctx, s, logger)
	err = s.Serve(ctx)
	stopHUP()
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return failure(c, cmd, fmt.Errorf("server stopped: %w", err))
	}
	return exitOK
}

// reloadOnSIGHUP reloads s at every SIGHUP until the returned function is
// called; that function waits for a reload in progress to finish.
func reloadOnSIGHUP(ctx context.Context, s *server.Server, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP received: reloading the configuration and the certificate")
				if _, err := s.Reload(ctx); err != nil {
					logger.Error("reload failed; the server keeps running as before", "err", err)
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
