package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"wren.im/wren/check"
)

func checkCommand() *command {
	return &command{
		name:    "check",
		args:    "[options]",
		summary: "find problems with the configuration, certificate, ports and DNS",
		help: `Checks what stands between the configuration and a server clients can
reach, and says for each finding what to do about it:

  config       the configuration file and its values
  server       whether Wren runs with this data directory
  certificate  present, readable, matching its key, naming the domain,
               days to expiry (warning under 14), chain to a trusted root
  port         each listener address can be bound (or the running Wren
               holds it)
  dns          _xmpp-client._tcp, _xmpps-client._tcp and _xmpp-server._tcp
               SRV records and the A/AAAA records of the domain, and whether
               they point to this machine

One line per finding: level (ok, warn, error), area, what was found, and
what to do. Exits with status 1 if there is any error.`,
		run: runCheck,
	}
}

func runCheck(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	addListenerFlags(cf)
	asJSON := fs.Bool("json", false, "print a JSON array of findings")
	positional, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q", positional[0])
	}
	var findings []check.Finding
	cfg, err := cf.loadUnchecked()
	if err != nil {
		for _, e := range unjoin(err) {
			findings = append(findings, check.Finding{Level: check.Error, Check: "config", Message: e.Error(),
				Fix: "correct the file; 'wren config example' shows every option"})
		}
		return printFindings(c, cmd, findings, *asJSON)
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range unjoin(err) {
			findings = append(findings, check.Finding{Level: check.Error, Check: "config", Message: e.Error(),
				Fix: "correct it in " + cf.source()})
		}
	} else {
		findings = append(findings, check.Finding{Level: check.OK, Check: "config", Message: "the configuration " + cf.source() + " is valid"})
	}
	findings = append(findings, check.Run(ctx, cfg, c.checkOptions)...)
	return printFindings(c, cmd, findings, *asJSON)
}

// printFindings writes the findings, one per line or as JSON, and returns
// exitFailure if any is an error.
func printFindings(c *cli, cmd *command, findings []check.Finding, asJSON bool) int {
	code := exitOK
	if check.Failed(findings) {
		code = exitFailure
	}
	if asJSON {
		if findings == nil {
			findings = []check.Finding{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return failure(c, cmd, err)
		}
		return code
	}
	counts := map[check.Level]int{}
	for _, f := range findings {
		counts[f.Level]++
		line := fmt.Sprintf("%-5s  %-11s  %s", f.Level, f.Check, f.Message)
		if f.Fix != "" {
			line += " -> " + f.Fix
		}
		fmt.Fprintln(c.stdout, strings.TrimRight(line, " "))
	}
	var summary string
	switch {
	case counts[check.Error] > 0:
		summary = fmt.Sprintf("%s, %s: fix the errors first", plural(counts[check.Error], "error"), plural(counts[check.Warn], "warning"))
	case counts[check.Warn] > 0:
		summary = fmt.Sprintf("no errors, %s", plural(counts[check.Warn], "warning"))
	default:
		summary = "no problems found"
	}
	fmt.Fprintln(c.stdout, summary)
	return code
}
