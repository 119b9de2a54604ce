package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"wren.im/wren/check"
	"wren.im/wren/config"
)

// Exit codes of the wren command.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // the command line was wrong
	// exitNotRunning means the command needs the running server and none
	// answers on the admin socket.
	exitNotRunning = 3
)

// cli is what a command reads from and writes to.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// checkOptions replace system facilities in 'wren check' (tests).
	checkOptions check.Options
}

// command is one subcommand such as "serve" or "user add".
type command struct {
	name    string // words after "wren", space separated
	args    string // synopsis of the arguments after the name
	summary string // one line for the command list
	help    string // longer description for "wren help NAME"
	run     func(ctx context.Context, c *cli, cmd *command, args []string) int
}

// commands lists every subcommand in the order the usage shows them.
func commands() []*command {
	return []*command{
		serveCommand(),
		statusCommand(),
		sessionListCommand(),
		sessionKickCommand(),
		reloadCommand(),
		pushLogCommand(),
		pushDevicesCommand(),
		pushTestCommand(),
		userAddCommand(),
		userPasswdCommand(),
		userDelCommand(),
		userListCommand(),
		checkCommand(),
		configExampleCommand(),
		configCheckCommand(),
		certGenerateCommand(),
		versionCommand(),
	}
}

// run executes the command line args (without the program name) and
// returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	cmds := commands()
	if len(args) == 0 {
		printUsage(stderr, cmds, "")
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return runHelp(ctx, c, cmds, args[1:])
	}
	cmd, rest, group := findCommand(cmds, args)
	if cmd == nil {
		if group != "" {
			if len(rest) == 0 {
				fmt.Fprintf(stderr, "wren %s: missing command\n\n", group)
			} else {
				fmt.Fprintf(stderr, "wren %s: unknown command %q\n\n", group, rest[0])
			}
			printUsage(stderr, cmds, group)
			return exitUsage
		}
		fmt.Fprintf(stderr, "wren: unknown command %q\n\n", args[0])
		printUsage(stderr, cmds, "")
		return exitUsage
	}
	return cmd.run(ctx, c, cmd, rest)
}

// findCommand matches the leading words of args against the command names.
// When nothing matches but args[0] starts a group of commands ("user"),
// group is that word.
func findCommand(cmds []*command, args []string) (cmd *command, rest []string, group string) {
	for _, cmd := range cmds {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == cmd.name {
			return cmd, args[len(words):], ""
		}
		if len(words) > 1 && words[0] == args[0] {
			group = words[0]
		}
	}
	return nil, args[1:], group
}

// runHelp implements "wren help [COMMAND...]".
func runHelp(ctx context.Context, c *cli, cmds []*command, args []string) int {
	if len(args) == 0 {
		printUsage(c.stdout, cmds, "")
		return exitOK
	}
	cmd, rest, group := findCommand(cmds, args)
	switch {
	case cmd != nil && len(rest) == 0:
		// Let the command print its own usage with its flags, to stdout.
		return cmd.run(ctx, &cli{stdin: c.stdin, stdout: c.stdout, stderr: c.stdout}, cmd, []string{"-h"})
	case group != "" && len(rest) == 0:
		printUsage(c.stdout, cmds, group)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "wren help: unknown command %q; run 'wren help' for the list\n", strings.Join(args, " "))
	return exitUsage
}

// printUsage lists the commands, or only those of group when it is set.
func printUsage(w io.Writer, cmds []*command, group string) {
	if group == "" {
		fmt.Fprint(w, "Wren is an XMPP server.\n\nUsage:\n  wren COMMAND [arguments]\n\nCommands:\n")
	} else {
		fmt.Fprintf(w, "Usage:\n  wren %s COMMAND [arguments]\n\nCommands:\n", group)
	}
	width := 0
	for _, cmd := range cmds {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range cmds {
		if group != "" && !strings.HasPrefix(cmd.name, group+" ") {
			continue
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
	}
	if group == "" {
		fmt.Fprintf(w, "  %-*s  %s\n", width, "help", "show the help of a command")
	}
	fmt.Fprint(w, "\nRun 'wren help COMMAND' for the options of a command.\n")
}

// flagSet returns an empty flag set for cmd that writes errors and usage to
// c.stderr.
func (cmd *command) flagSet(c *cli) *flag.FlagSet {
	fs := flag.NewFlagSet("wren "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  wren %s %s\n\n%s\n", cmd.name, cmd.args, cmd.help)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nOptions:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args with fs, allowing options before and after the
// positional arguments ("wren user add alice --password-stdin"); "--" ends
// the options. ok is false when the caller must return code: after -h
// (code 0) or a bad option (code 2; fs has already explained it).
func parse(fs *flag.FlagSet, args []string) (positional []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), 0, true
		}
		if len(rest) == 0 {
			return positional, 0, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError reports a wrong command line and returns exitUsage.
func usageError(c *cli, cmd *command, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "wren %s: %s\nRun 'wren help %s' for usage.\n", cmd.name, fmt.Sprintf(format, args...), cmd.name)
	return exitUsage
}

// failure reports a failed command and returns exitFailure.
// An error of several lines (such as a list of configuration problems) is
// printed below the command name, indented.
func failure(c *cli, cmd *command, err error) int {
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		fmt.Fprintf(c.stderr, "wren %s:\n  %s\n", cmd.name, strings.ReplaceAll(msg, "\n", "\n  "))
	} else {
		fmt.Fprintf(c.stderr, "wren %s: %s\n", cmd.name, msg)
	}
	return exitFailure
}

// configFlags are the options shared by every command that needs the
// configuration: --config, --domain and --data, plus any overrides the
// command adds. Overrides apply only when given on the command line.
type configFlags struct {
	fs      *flag.FlagSet
	path    string
	setters map[string]func(*config.Config, string)
}

// addConfigFlags registers --config, --domain and --data on fs.
func addConfigFlags(fs *flag.FlagSet) *configFlags {
	cf := &configFlags{fs: fs, setters: make(map[string]func(*config.Config, string))}
	fs.StringVar(&cf.path, "config", "", "read the configuration from `FILE` (default: built-in defaults)")
	cf.override("domain", "serve the XMPP `DOMAIN` (overrides domain)", func(c *config.Config, v string) { c.Domain = v })
	cf.override("data", "keep the database and certificates in `DIR` (overrides data_dir)", func(c *config.Config, v string) { c.DataDir = v })
	return cf
}

// override registers a string option that, when given, changes the
// configuration loaded by load through set.
func (cf *configFlags) override(name, usage string, set func(*config.Config, string)) {
	cf.fs.String(name, "", usage)
	cf.setters[name] = set
}

// source describes where the configuration comes from, for messages.
func (cf *configFlags) source() string {
	s := cf.path
	if s == "" {
		s = "(built-in defaults)"
	}
	overridden := false
	cf.fs.Visit(func(f *flag.Flag) {
		if cf.setters[f.Name] != nil {
			overridden = true
		}
	})
	if overridden {
		s += " with command-line options"
	}
	return s
}

// load reads the configuration file (or the defaults), applies the options
// given on the command line and validates the result. The error lists every
// problem, one per line.
func (cf *configFlags) load() (*config.Config, error) {
	cfg, err := cf.loadUnchecked()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s", configProblems(cf.source(), err))
	}
	return cfg, nil
}

// loadUnchecked reads the configuration file (or the defaults) and applies
// the options given on the command line, without validating the result:
// enough to find the data directory, or to report problems one by one.
func (cf *configFlags) loadUnchecked() (*config.Config, error) {
	cfg := config.Default()
	if cf.path != "" {
		var err error
		if cfg, err = config.Load(cf.path); err != nil {
			return nil, err
		}
	}
	cf.fs.Visit(func(f *flag.Flag) {
		if set := cf.setters[f.Name]; set != nil {
			set(cfg, f.Value.String())
		}
	})
	return cfg, nil
}

// configProblems formats the problems found by Validate, one per line,
// each starting with "config SOURCE: ".
func configProblems(source string, err error) string {
	var lines []string
	for _, e := range unjoin(err) {
		lines = append(lines, fmt.Sprintf("config %s: %v", source, e))
	}
	return strings.Join(lines, "\n")
}

// unjoin returns the errors joined in err by errors.Join, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// newLogger returns the logger configured by cfg.Log, writing to w, and
// the level it filters with, which a reload may change.
func newLogger(cfg config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, nil, fmt.Errorf("log.level %q: %w", cfg.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), level, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), level, nil
	}
	return nil, nil, fmt.Errorf("log.format %q is unknown: use text or json", cfg.Format)
}
