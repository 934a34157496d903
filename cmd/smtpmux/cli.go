package main

// The admin CLI: "smtpmux providers|keys|groups|mailboxes|emails|limits …"
// are thin clients of the Management API. Every command is one entry in a
// table (cliResources) naming its arguments, declaring its flags and
// running one or a few API calls through cliClient.do; rendering is done
// by the column specs of cli_table.go. Keeping commands declarative keeps
// their flags, usage text and exit codes uniform.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// Exit codes of the admin CLI. They are part of its interface: scripts
// branch on them, so they never change meaning.
const (
	exitOK      = 0 // success
	exitAPI     = 1 // the API answered with an error (validation, not found, conflict, 5xx…)
	exitUsage   = 2 // bad command line: unknown command, flag or argument count
	exitNetwork = 3 // the server could not be reached or did not answer JSON
	exitAuth    = 4 // authentication or permission refused (401/403, or no key at all)
)

// cliUsageText documents the commands, global flags and exit codes; it is
// printed by "smtpmux help" as well as on a usage error.
const cliUsageText = `admin commands (call the Management API):
  providers list [--status S] [--type T]
  providers get|activate|deactivate|test|delete ID
  providers create --name N --host H --port P [--protocol starttls] [--username U]
                   [--password-stdin] [--percentage N] [--group ID]
  providers usage | providers stats
  keys list | keys create --name N [--type sending|root] [--scope all|providers:ID,ID|group:ID,ID]
  keys revoke ID
  groups list | groups get|delete ID | groups create --name N [--description D]
  mailboxes list | mailboxes get|suspend|resume|delete ID
  mailboxes create --address A [--name N]
  mailboxes passwords list MBX | mailboxes passwords create MBX --name N
  mailboxes passwords revoke MBX PWID
  emails get ID | emails logs [--status S] [--limit N]
  limits

  global flags (after the command): --url URL (env SMTPMUX_URL, default http://127.0.0.1:8025),
  --key KEY (env SMTPMUX_API_KEY; prefer the environment: flags show in ps), --json (print the
  API's data member; lists: all pages as one array). Lists follow pagination up to --limit
  (default all, at most 10000). Created secrets are printed once.

  exit codes: 0 ok; 1 the API answered an error (or a provider test failed); 2 usage error;
              3 server unreachable or not answering JSON; 4 authentication/permission refused
`

// cliCmd is one "resource action" command.
type cliCmd struct {
	args  []string // positional argument names, all required
	flags string   // flag synopsis for the usage line
	// setup declares the command's flags on fs and returns the code that
	// runs once they are parsed, so flag values travel in the closure
	// rather than through a shared options struct.
	setup func(fs *flag.FlagSet) func(c *cliClient, args []string) error
}

// cliResources maps resource → action → command. An action "" is the
// resource's only command ("limits"); two-word actions ("passwords
// create") are nested resources.
var cliResources = map[string]map[string]cliCmd{
	"providers": providerCmds,
	"keys":      keyCmds,
	"groups":    groupCmds,
	"mailboxes": mailboxCmds,
	"emails":    emailCmds,
	"limits":    limitCmds,
}

// cliExit is an error carrying the exit code it stands for; commands
// return it (or errors wrapping it) and cliMain maps it to the code.
type cliExit struct {
	code int
	msg  string
}

func (e *cliExit) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &cliExit{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// cliMain runs an admin command; args start with the resource name.
func cliMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	resource, rest := args[0], args[1:]
	cmds := cliResources[resource]
	if len(rest) > 0 && (rest[0] == "help" || rest[0] == "-h" || rest[0] == "--help") {
		cliResourceUsage(stdout, resource, cmds)
		return exitOK
	}
	name, cmd, rest, ok := cliLookup(cmds, rest)
	if !ok {
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "%s: missing action\n", resource)
		} else {
			fmt.Fprintf(stderr, "%s: unknown action %q\n", resource, rest[0])
		}
		cliResourceUsage(stderr, resource, cmds)
		return exitUsage
	}
	full := strings.TrimSpace(resource + " " + name)
	fs := flag.NewFlagSet(full, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &cliClient{stdin: stdin, stdout: stdout, stderr: stderr,
		// Provider tests may take the server's whole test timeout (30 s).
		http: &http.Client{Timeout: 2 * time.Minute}}
	fs.StringVar(&c.base, "url", envOr("SMTPMUX_URL", "http://127.0.0.1:8025"), "the daemon's HTTP address")
	// The default comes from the environment but is not shown by
	// PrintDefaults, so -h never echoes the key.
	fs.StringVar(&c.key, "key", "", "API key (default $SMTPMUX_API_KEY)")
	fs.BoolVar(&c.json, "json", false, "print the API's JSON data instead of a table")
	runCmd := cmd.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: smtpmux %s%s %s\n", full, cliArgNames(cmd.args), cmd.flags)
		fs.PrintDefaults()
	}
	pos, err := cliParse(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // the flag package already said why
	}
	if len(pos) != len(cmd.args) {
		fmt.Fprintf(stderr, "%s: want %d argument(s)%s, got %d\n", full, len(cmd.args), cliArgNames(cmd.args), len(pos))
		fs.Usage()
		return exitUsage
	}
	if c.key == "" {
		c.key = os.Getenv("SMTPMUX_API_KEY")
	}
	return c.exitCode(runCmd(c, pos))
}

// cliLookup finds the command named by the first one or two words of
// args and returns the remaining arguments.
func cliLookup(cmds map[string]cliCmd, args []string) (string, cliCmd, []string, bool) {
	if len(args) >= 2 {
		if cmd, ok := cmds[args[0]+" "+args[1]]; ok {
			return args[0] + " " + args[1], cmd, args[2:], true
		}
	}
	if len(args) >= 1 {
		if cmd, ok := cmds[args[0]]; ok && args[0] != "" {
			return args[0], cmd, args[1:], true
		}
	}
	if cmd, ok := cmds[""]; ok && (len(args) == 0 || strings.HasPrefix(args[0], "-")) {
		return "", cmd, args, true
	}
	return "", cliCmd{}, args, false
}

// cliParse parses flags anywhere among the positional arguments
// ("providers get ID --json" as well as "providers get --json ID"): the
// flag package stops at the first positional one, so parsing resumes
// after each.
func cliParse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func cliArgNames(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " " + strings.Join(names, " ")
}

// cliResourceUsage lists a resource's actions, sorted for a stable text.
func cliResourceUsage(w io.Writer, resource string, cmds map[string]cliCmd) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "usage:\n")
	for _, n := range names {
		cmd := cmds[n]
		line := strings.TrimSpace(strings.Join([]string{resource, n}, " ")) + cliArgNames(cmd.args)
		if cmd.flags != "" {
			line += " " + cmd.flags
		}
		fmt.Fprintf(w, "  smtpmux %s\n", line)
	}
	fmt.Fprintln(w, "global flags: --url URL, --key KEY (or SMTPMUX_URL, SMTPMUX_API_KEY), --json")
	fmt.Fprintln(w, "exit codes: 0 ok, 1 API error, 2 usage, 3 unreachable, 4 auth refused")
}

// exitCode reports err on stderr and maps it to the exit code.
func (c *cliClient) exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ae *cliAPIError
	if errors.As(err, &ae) {
		fmt.Fprintf(c.stderr, "error: %s: %s\n", ae.Code, ae.Message)
		for _, fe := range ae.Errors {
			fmt.Fprintf(c.stderr, "  %s: %s (%s)\n", fe.Field, fe.Message, fe.Code)
		}
		if ae.RequestID != "" {
			fmt.Fprintf(c.stderr, "  request: %s\n", ae.RequestID)
		}
		if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
			return exitAuth
		}
		return exitAPI
	}
	var ce *cliExit
	if errors.As(err, &ce) {
		fmt.Fprintf(c.stderr, "error: %s\n", ce.msg)
		return ce.code
	}
	fmt.Fprintf(c.stderr, "error: %v\n", err)
	return exitAPI
}
