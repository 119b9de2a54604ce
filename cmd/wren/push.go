package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/storage"
)

// Commands for the built-in push gateway: its delivery records, the
// devices registered with it, and test pushes.

const pushAccountHelp = `ACCOUNT is a user of this server (alice or alice@example.org) or the bare
JID of a user of another server whose phone registered with the gateway
(bob@example.net).`

const pushAdminHelp = adminHelp + `

Exits with status 1 when the push gateway is disabled
(push_gateway.enabled = false).`

// pushTestMinWait bounds 'wren push test' when the configuration read by
// the command has a short request_timeout: the server's own wait is what
// limits the command.
const pushTestMinWait = 2 * time.Minute

func pushLogCommand() *command {
	return &command{
		name:    "push log",
		args:    "[--account ACCOUNT] [--device ID] [--since TIME] [--limit N] [options]",
		summary: "show the push gateway's delivery records, by account or device",
		help: `Lists the push gateway's delivery records, newest first: one per push sent
to a phone through APNs or FCM, with the time it was queued, the device,
the outcome (delivered, retrying, dead-token, failed, dropped-queue-full),
the attempts made, the time from queueing to the last outcome, and the
provider's message id or the reason of the failure. A record marked
"silent" woke the app without an alert; "+N coalesced" counts the
notifications merged into the push while it waited.

--account keeps the records of one account's devices: a user of this
server (alice or alice@example.org) or the bare JID of a user of another
server whose phone registered with the gateway (bob@example.net).
--device keeps the records of the devices registered with that id
(Conversations' Android id, an iOS device id). --since takes a duration
back from now (90m, 36h, 7d) or a time (2026-11-27T09:00:00Z,
2026-11-27T10:00:00+01:00, or a date 2026-11-27).

` + pushAdminHelp,
		run: runPushLog,
	}
}

func runPushLog(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	account := fs.String("account", "", "show the records of the devices of `ACCOUNT` only")
	device := fs.String("device", "", "show the records of the devices registered with `ID` only")
	since := fs.String("since", "", "show the records of pushes queued since `TIME` (a duration back from now, or a time)")
	limit := fs.Int("limit", admin.DefaultPushLogLimit, fmt.Sprintf("show at most `N` records, the newest (1 to %d)", admin.MaxPushLogLimit))
	asJSON := fs.Bool("json", false, "print a JSON array of records")
	cfg, positional, code, ok := adminSetup(c, cmd, cf, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q (give the account with --account)", positional[0])
	}
	if *limit < 1 || *limit > admin.MaxPushLogLimit {
		return usageError(c, cmd, "--limit must be between 1 and %d, not %d", admin.MaxPushLogLimit, *limit)
	}
	if *since != "" {
		if _, err := admin.ParseSince(*since, time.Now()); err != nil {
			return usageError(c, cmd, "--%v", err)
		}
	}
	cl, code, ok := connect(ctx, c, cmd, cfg)
	if !ok {
		return code
	}
	defer cl.Close()
	q := admin.PushLogQuery{Owner: strings.TrimSpace(*account), DeviceID: *device, Since: *since, Limit: *limit}
	recs, err := cl.PushLog(ctx, q)
	if err != nil {
		return pushFailure(c, cmd, err)
	}
	if *asJSON {
		if recs == nil {
			recs = []admin.PushRecord{}
		}
		return printJSON(c, cmd, recs)
	}
	if len(recs) == 0 {
		if q.Owner == "" && q.DeviceID == "" && q.Since == "" {
			fmt.Fprintln(c.stderr, "the push gateway has no delivery record")
		} else {
			fmt.Fprintln(c.stderr, "no push delivery record matches")
		}
		return exitOK
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME (UTC)\tACCOUNT\tDEVICE\tPROVIDER\tOUTCOME\tATTEMPTS\tLATENCY\tPROVIDER ID / REASON")
	for _, r := range recs {
		details := []string{recordDetail(r)}
		if !r.Important {
			details = append(details, "silent")
		}
		if r.Coalesced > 0 {
			details = append(details, fmt.Sprintf("+%d coalesced", r.Coalesced))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Time.UTC().Format(time.DateTime), r.Owner, r.DeviceID, r.Provider, r.Outcome,
			r.Attempts, formatLatency(r.Latency()), strings.Join(details, ", "))
	}
	w.Flush()
	if len(recs) == *limit {
		fmt.Fprintf(c.stderr, "(showing the newest %s; --limit and --since show others)\n", plural(len(recs), "record"))
	}
	return exitOK
}

// recordDetail is the provider's id of a delivered push, or what went
// wrong with another.
func recordDetail(r admin.PushRecord) string {
	switch {
	case r.Outcome == storage.PushDelivered && r.ProviderID != "":
		return r.ProviderID
	case r.Reason != "":
		return r.Reason
	case r.ProviderID != "":
		return r.ProviderID
	}
	return "-"
}

func pushDevicesCommand() *command {
	return &command{
		name:    "push devices",
		args:    "ACCOUNT [options]",
		summary: "list the devices an account registered with the push gateway",
		help: `Lists the devices ACCOUNT registered with the push gateway, oldest first:
the provider (apns or fcm), the device id, the start of the provider
token, when the device registered first and last (apps register again at
every start), and for iOS devices the APNs topic and environment. A
registration for a group chat's notifications names the group chat. The
publish secrets are never shown.

` + pushAccountHelp + `

` + pushAdminHelp,
		run: runPushDevices,
	}
}

func runPushDevices(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	asJSON := fs.Bool("json", false, "print the devices as a JSON object {\"owner\", \"devices\": [...]}")
	cfg, positional, code, ok := adminSetup(c, cmd, cf, args)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		return usageError(c, cmd, "expected one ACCOUNT (alice, or alice@example.net for a user of another server), got %d arguments", len(positional))
	}
	cl, code, ok := connect(ctx, c, cmd, cfg)
	if !ok {
		return code
	}
	defer cl.Close()
	list, err := cl.PushDevices(ctx, positional[0])
	if err != nil {
		return pushFailure(c, cmd, err)
	}
	if *asJSON {
		if list.Devices == nil {
			list.Devices = []admin.PushDevice{}
		}
		return printJSON(c, cmd, list)
	}
	if len(list.Devices) == 0 {
		fmt.Fprintf(c.stderr, "%s has no device registered with the push gateway\n", list.Owner)
		return exitOK
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PROVIDER\tDEVICE\tTOKEN\tREGISTERED (UTC)\tUPDATED (UTC)\tDETAILS")
	for _, d := range list.Devices {
		var details []string
		if d.MUC != "" {
			details = append(details, "group chat "+d.MUC)
		}
		if d.Provider == "apns" {
			topic := "default topic"
			if d.Topic != "" {
				topic = "topic " + d.Topic
			}
			env := "production"
			if d.Sandbox {
				env = "development (sandbox)"
			}
			details = append(details, topic, env)
		}
		if len(details) == 0 {
			details = append(details, "-")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Provider, d.DeviceID, d.Token, d.Created.UTC().Format(time.DateTime), d.Updated.UTC().Format(time.DateTime), strings.Join(details, ", "))
	}
	w.Flush()
	return exitOK
}

func pushTestCommand() *command {
	return &command{
		name:    "push test",
		args:    "ACCOUNT [options]",
		summary: "send a test push to each device of an account and show the outcome",
		help: `Sends a test alert ("Wren test push", one message) to each device ACCOUNT
registered with the push gateway, through the gateway's queue like any
push, and prints the outcome of each first attempt: delivered with the
provider's message id, or the provider's reason. The server waits for the
providers up to push_gateway.request_timeout and 5 seconds more. The
pushes are recorded ('wren push log'). As for any push, a device whose
token the provider reports dead is removed, and a temporary failure is
retried by the gateway afterwards.

` + pushAccountHelp + `

` + adminHelp + `

Exits with status 0 when every device's push was delivered, and 1 when
any was not, when the account has no device, or when the push gateway is
disabled.`,
		run: runPushTest,
	}
}

func runPushTest(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	asJSON := fs.Bool("json", false, "print the outcomes as a JSON object {\"owner\", \"results\": [...]}")
	cfg, positional, code, ok := adminSetup(c, cmd, cf, args)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		return usageError(c, cmd, "expected one ACCOUNT (alice, or alice@example.net for a user of another server), got %d arguments", len(positional))
	}
	cl, code, ok := connect(ctx, c, cmd, cfg)
	if !ok {
		return code
	}
	defer cl.Close()
	// The server bounds its wait by its own request_timeout; this only
	// keeps the command from waiting for ever on a stuck server.
	wait := max(pushTestMinWait, cfg.PushGateway.RequestTimeout.Duration+time.Minute)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	report, err := cl.PushTest(ctx, positional[0])
	if err != nil {
		return pushFailure(c, cmd, err)
	}
	failed := len(report.Results) - report.Delivered()
	if *asJSON {
		if report.Results == nil {
			report.Results = []admin.PushTestResult{}
		}
		if code := printJSON(c, cmd, report); code != exitOK {
			return code
		}
	} else if len(report.Results) > 0 {
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "DEVICE\tPROVIDER\tOUTCOME\tLATENCY\tPROVIDER ID / REASON")
		for _, r := range report.Results {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Device.DeviceID, r.Device.Provider, r.Outcome, formatLatency(r.Latency()), testDetail(r))
		}
		w.Flush()
		fmt.Fprintf(c.stdout, "%d of %s delivered to %s\n", report.Delivered(), testPushes(len(report.Results)), report.Owner)
	}
	switch {
	case len(report.Results) == 0:
		return failure(c, cmd, fmt.Errorf("%s has no device registered with the push gateway; nothing was sent", report.Owner))
	case failed > 0:
		return failure(c, cmd, fmt.Errorf("%d of %s to %s not delivered; 'wren push log --account %s' shows the records", failed, testPushes(len(report.Results)), report.Owner, report.Owner))
	}
	return exitOK
}

// testPushes counts test pushes in words.
func testPushes(n int) string {
	if n == 1 {
		return "1 test push"
	}
	return fmt.Sprintf("%d test pushes", n)
}

// testDetail explains the outcome of a test push.
func testDetail(r admin.PushTestResult) string {
	switch r.Outcome {
	case storage.PushDelivered:
		return r.ProviderID
	case storage.PushRetrying:
		return r.Reason + " (a temporary failure: the gateway retries the push)"
	case storage.PushDeadToken:
		return r.Reason + " (the token is dead: the device was removed)"
	case admin.PushTimeout:
		return "the provider did not answer in time"
	}
	if r.Reason == "" {
		return "-"
	}
	return r.Reason
}

// pushFailure reports a failed push command; a disabled gateway gets the
// way to enable it.
func pushFailure(c *cli, cmd *command, err error) int {
	if errors.Is(err, admin.ErrNotFound) {
		return failure(c, cmd, fmt.Errorf("%w; set enabled = true under [push_gateway] in the configuration and restart the server", err))
	}
	return adminFailure(c, cmd, err)
}

// formatLatency rounds a push latency for people.
func formatLatency(d time.Duration) string {
	if d < time.Second {
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
