// Package cluster is smtpmux's cluster mode on etcd: the state of record
// (teams, keys, providers, groups, mailboxes, domains, webhooks, limit
// requests; Idempotency-Key records and OAuth connect flows, which no
// node keeps a view of) lives in etcd under one key prefix, every node keeps its
// bbolt file as a read view kept current by a watch, writes go to etcd as
// transactions, and nodes register under a lease. Messages never leave
// the node that accepted them.
//
// A Node is the one etcd client of a process. Other cluster features
// (cluster-wide quotas, shared provider health) take its Client, Prefix
// and ID from cmd's wiring rather than dialling etcd again.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Config is what a node needs to join: the [cluster] section, validated.
type Config struct {
	Endpoints              []string
	TLSCA, TLSCert, TLSKey string
	Username, Password     string
	Prefix                 string // starts and ends with "/"
	NodeID                 string
	AdvertiseURL           string
	Version                string // smtpmux's version, shown in membership
	StartedAt              time.Time
	Logger                 *slog.Logger
	// OpTimeout bounds one etcd call of a write (0: 3 s); LeaseTTL is
	// the membership lease in seconds (0: 10).
	OpTimeout time.Duration
	LeaseTTL  int64
	// IdemTeamBytes is each team's budget of Idempotency-Key records
	// kept in etcd per 24 h (see idemBudget); 0: DefaultIdemTeamBytes,
	// negative: none.
	IdemTeamBytes int64
}

// defaultOpTimeout bounds one etcd round trip of a management write: past
// it the write answers 503 instead of hanging a client.
const defaultOpTimeout = 3 * time.Second

// Node is one smtpmux process in cluster mode.
type Node struct {
	cfg       Config
	cli       *clientv3.Client
	log       *slog.Logger
	opTimeout time.Duration
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	// applied is the etcd revision this node's view has applied, seqRev
	// the mod revision of the write counter in it; cond wakes waiters.
	mu      sync.Mutex
	applied int64
	seqRev  int64
	advance chan struct{}

	// registered is set while this node's membership lease is alive;
	// watching while the watch stream is up.
	registered atomic.Bool
	// memberLease is the membership lease while it is alive (0 when not):
	// in-flight idempotency records live on it, so they end with the
	// process that serves them (idempotency.go).
	memberLease atomic.Int64
	idemOnce    sync.Once
	idem        *Idempotency
	watching    atomic.Bool
	lastOK      atomic.Int64 // unix nanos of the last good contact with etcd

	// etcdWrites counts the etcd write transactions of state-of-record
	// writes (figures for docs and tests).
	etcdWrites atomic.Int64
	st         recordStore
	// refused is set when the canary, checked late (Join), refused this
	// node's secret_key: every write fails with it.
	refused atomic.Pointer[error]
}

// Open dials etcd. It does not wait for etcd to answer: Join does.
func Open(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var tlsCfg *tls.Config
	if cfg.TLSCA != "" || cfg.TLSCert != "" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pem, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("etcd_tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("etcd_tls_ca: %s holds no PEM certificate", cfg.TLSCA)
			}
			tlsCfg.RootCAs = pool
		}
		if cfg.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("etcd_tls_cert/etcd_tls_key: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: tlsCfg, Username: cfg.Username, Password: cfg.Password,
		DialTimeout: 5 * time.Second, DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		// gRPC's default reconnect back-off grows to 120 s: after an
		// etcd outage of ten seconds a node waited up to ~8 s more
		// before its watches came back (TestCluster's "etcd down"
		// converges within 10 s, and missed it). Capped at 3 s, a node
		// is back within about that once etcd is.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
		// The client's own zap logs would be a second log format on
		// stderr; what matters is reported through slog.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	n := &Node{cfg: cfg, cli: cli, log: cfg.Logger.With("node_id", cfg.NodeID), opTimeout: defaultOpTimeout,
		advance: make(chan struct{})}
	if cfg.OpTimeout > 0 {
		n.opTimeout = cfg.OpTimeout
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Client is the node's etcd client, for other cluster features to share.
func (n *Node) Client() *clientv3.Client { return n.cli }

// Prefix is the key prefix every smtpmux key lives under.
func (n *Node) Prefix() string { return n.cfg.Prefix }

// ID is this node's node_id.
func (n *Node) ID() string { return n.cfg.NodeID }

// EtcdWrites counts the etcd write transactions this node made for
// state-of-record writes.
func (n *Node) EtcdWrites() int64 { return n.etcdWrites.Load() }

// Close stops the watch and the membership lease (revoking it, so the
// node leaves the member list at once) and closes the client.
func (n *Node) Close() error {
	n.cancel()
	n.wg.Wait()
	return n.cli.Close()
}

// opCtx bounds one etcd call.
func (n *Node) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(n.ctx, n.opTimeout)
}

// unavailable wraps an etcd failure as the store's retryable answer.
func unavailable(what string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", errUnavailable, what, err)
}

// contact notes a successful exchange with etcd.
func (n *Node) contact() { n.lastOK.Store(time.Now().UnixNano()) }
