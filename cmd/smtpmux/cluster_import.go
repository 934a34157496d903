package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/smtpmux/smtpmux/cluster"
	"github.com/smtpmux/smtpmux/store"
)

// clusterImportCmd is "smtpmux cluster import --config FILE --from DB
// [--dry-run]": it copies a single node's state of record into the etcd
// that FILE's [cluster] names, so a one-VM install can grow into a
// cluster. The daemon that owns DB must be stopped (bbolt's lock says so
// otherwise). The config's secret_key must open the file's sealed
// secrets and the cluster's canary: providers copied under another key
// would be unreadable on every node.
func clusterImportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cluster import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/smtpmux/config.toml", "a cluster node's config (its [cluster] and secret_key)")
	from := fs.String("from", "", "the single node's store file, e.g. data/smtpmux.db (required; that daemon stopped)")
	dryRun := fs.Bool("dry-run", false, "count what would be written, write nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *from == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "cluster import: --from is required")
		return 2
	}
	res, err := clusterImport(*path, *from, *dryRun)
	if err != nil {
		fmt.Fprintf(stderr, "cluster import: %v\n", err)
		return 1
	}
	verb := "wrote"
	if *dryRun {
		verb = "would write"
	}
	fmt.Fprintf(stdout, "cluster import: %d keys in %s; %s %d, %d already in etcd unchanged (%d etcd transactions)\n",
		res.Keys, *from, verb, res.Written, res.Unchanged, res.Transactions)
	return 0
}

func clusterImport(cfgPath, from string, dryRun bool) (cluster.ImportResult, error) {
	var res cluster.ImportResult
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return res, fmt.Errorf("config invalid: %w", err)
	}
	if cfg.cluster == nil {
		return res, errors.New("the config has no [cluster] etcd_endpoints")
	}
	key := cfg.secretKey
	if key == "" {
		return res, errors.New("the config has no secret_key: a cluster needs one shared key, set it to the single node's")
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		return res, err
	}
	if _, err := store.CheckSealedFile(from, sealer); err != nil {
		return res, fmt.Errorf("%s: its secrets do not open with this secret_key: %w", from, err)
	}
	src, err := store.Open(from, 2*time.Second, store.WithoutHistoryMover()) // read only: its history stays as it is
	if err != nil {
		return res, err
	}
	defer src.Close()
	ncfg := cfg.cluster.nodeConfig()
	node, err := cluster.Open(ncfg)
	if err != nil {
		return res, err
	}
	defer node.Close()
	if !dryRun {
		if err := node.CheckCanary(sealer); err != nil {
			return res, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return node.Import(ctx, src, dryRun)
}
