package main

import (
	"context"
	"errors"
	"fmt"

	"wren.im/wren/config"
	"wren.im/wren/server"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		args:    "[options]",
		summary: "run the XMPP server",
		help: `Runs the server until it receives SIGINT (Ctrl-C) or SIGTERM, then shuts
down gracefully. Without --config the built-in defaults are used: domain
localhost, data in ./data, clients on 127.0.0.1 only. Options given here
override the configuration file; an empty address ("") disables that
listener. Run 'wren config example' for every setting.`,
		run: runServe,
	}
}

func runServe(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	cf.override("c2s", "accept client connections (STARTTLS) on `ADDR` host:port; \"\" disables (overrides c2s.listen)",
		func(cfg *config.Config, v string) { cfg.C2S.Listen = v })
	cf.override("c2s-tls", "accept direct TLS client connections on `ADDR` host:port; \"\" disables (overrides c2s.direct_tls)",
		func(cfg *config.Config, v string) { cfg.C2S.DirectTLS = v })
	cf.override("log-level", "log at `LEVEL`: debug, info, warn or error (overrides log.level)",
		func(cfg *config.Config, v string) { cfg.Log.Level = v })
	positional, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q", positional[0])
	}
	cfg, err := cf.load()
	if err != nil {
		return failure(c, cmd, err)
	}
	logger, err := newLogger(cfg.Log, c.stderr)
	if err != nil {
		return failure(c, cmd, err)
	}
	logger.Info("configuration loaded", "config", cf.source())
	err = server.Run(ctx, cfg, logger)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return failure(c, cmd, fmt.Errorf("server stopped: %w", err))
	}
	return exitOK
}
