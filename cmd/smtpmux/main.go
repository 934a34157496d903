// Command smtpmux is the smtpmux daemon and its command-line tools.
//
//	smtpmux serve --config FILE         run the daemon
//	smtpmux check-config --config FILE  validate a config file (exit 1 naming the bad key)
//	smtpmux version                     print the version
//	smtpmux providers|keys|groups|mailboxes|emails|limits …  admin CLI (see cli.go)
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		path, ok := configFlag("serve", args[1:], stderr)
		if !ok {
			return 2
		}
		return serve(path, stderr)
	case "check-config":
		path, ok := configFlag("check-config", args[1:], stderr)
		if !ok {
			return 2
		}
		if _, err := loadConfig(path); err != nil {
			fmt.Fprintf(stderr, "config invalid: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "config ok")
		return 0
	case "backup":
		return backupCmd(args[1:], stdout, stderr)
	case "restore":
		return restoreCmd(args[1:], stdout, stderr)
	case "cluster":
		if len(args) > 1 && args[1] == "import" {
			return clusterImportCmd(args[2:], stdout, stderr)
		}
		fmt.Fprintln(stderr, "usage: smtpmux cluster import --config FILE --from DATA_DIR/smtpmux.db [--dry-run]")
		return 2
	case "keys":
		if len(args) > 1 && args[1] == "reset-root" {
			return resetRootCmd(args[2:], stdout, stderr)
		}
		return cliMain(args, os.Stdin, stdout, stderr)
	case "providers", "groups", "mailboxes", "emails", "limits":
		return cliMain(args, os.Stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "smtpmux", version)
		return 0
	case "help", "--help", "-h":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/smtpmux/config.toml", "path to the TOML config file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return "", false
	}
	return *path, true
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: smtpmux <command> [flags]

commands:
  serve --config FILE         run the relay daemon
  check-config --config FILE  validate a config file; exit 1 naming the offending key
  backup --out FILE [--url URL] [--token T] [--with-secret-key [--config FILE]]
                              download an online snapshot of the store (and the secret key to FILE.key)
  restore --config FILE --from BACKUP [--secret-key-file FILE.key]
                              put a snapshot in place (daemon stopped)
  cluster import --config FILE --from DATA_DIR/smtpmux.db [--dry-run]
                              copy a single node's teams, keys, providers… into the etcd of [cluster] (idempotent)
  keys reset-root --data-dir DIR [--team NAME]  revoke a team's root keys, print a new one (daemon stopped)
  version                     print the version

`+cliUsageText)
}
