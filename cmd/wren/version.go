package main

import (
	"context"
	"fmt"
	"runtime"

	"wren.im/wren/server"
)

func versionCommand() *command {
	return &command{
		name:    "version",
		args:    "",
		summary: "print the version of Wren and of Go it was built with",
		help:    "Prints the version of Wren and the Go version, OS and architecture it was built for.",
		run:     runVersion,
	}
}

func runVersion(ctx context.Context, c *cli, cmd *command, args []string) int {
	positional, code, ok := parse(cmd.flagSet(c), args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q", positional[0])
	}
	fmt.Fprintf(c.stdout, "wren %s (%s %s/%s)\n", server.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
