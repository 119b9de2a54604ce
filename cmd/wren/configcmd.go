package main

import (
	"context"
	"fmt"
	"io"

	"wren.im/wren/config"
)

func configExampleCommand() *command {
	return &command{
		name:    "config example",
		args:    "",
		summary: "print a configuration file with every option, its default and what it does",
		help: `Prints a complete configuration file in TOML with every option set to its
default value and explained. Save it and edit what you need:

  wren config example > /etc/wren/wren.toml`,
		run: runConfigExample,
	}
}

func runConfigExample(ctx context.Context, c *cli, cmd *command, args []string) int {
	positional, code, ok := parse(cmd.flagSet(c), args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q", positional[0])
	}
	io.WriteString(c.stdout, config.Example())
	return exitOK
}

func configCheckCommand() *command {
	return &command{
		name:    "config check",
		args:    "[FILE] [options]",
		summary: "check a configuration file and report every problem",
		help: `Loads the configuration file (FILE or --config; without either, the
built-in defaults), applies the options given and reports every problem
found. Exits with status 1 if there is any.`,
		run: runConfigCheck,
	}
}

func runConfigCheck(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	positional, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	switch {
	case len(positional) > 1:
		return usageError(c, cmd, "expected at most one FILE, got %d arguments", len(positional))
	case len(positional) == 1 && cf.path != "" && cf.path != positional[0]:
		return usageError(c, cmd, "give the file either as FILE or with --config, not both")
	case len(positional) == 1:
		cf.path = positional[0]
	}
	if _, err := cf.load(); err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFailure
	}
	fmt.Fprintf(c.stdout, "config OK: %s\n", cf.source())
	return exitOK
}
