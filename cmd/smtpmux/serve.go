package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/admin/dashboard"
	"github.com/smtpmux/smtpmux/admin/sendapi"
	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/cluster"
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/gctune"
	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/jobs"
	"github.com/smtpmux/smtpmux/internal/proxied"
	"github.com/smtpmux/smtpmux/internal/ratelimit"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/bounce"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/shaping"
	"github.com/smtpmux/smtpmux/store"
)

// daemon is everything serve starts, in start order; shutdown runs in
// reverse: stop taking mail, finish attempts, stop the API, close the store.
type daemon struct {
	cfg     *config
	log     *slog.Logger
	store   *store.Store
	reg     *relay.Registry
	sched   *relay.Scheduler
	smtp    *relay.Server
	limiter *ratelimit.Limiter
	http    *http.Server
	certs   *certStore
	cancel  context.CancelFunc
	done    chan struct{}
	// running is set once everything started and cleared at shutdown;
	// /readyz and the systemd watchdog follow it.
	running  atomic.Bool
	logLevel *slog.LevelVar
	hooks    *webhook.Dispatcher
	// background runs the webhook dispatcher and the retention sweep.
	background     sync.WaitGroup
	stopBackground context.CancelFunc
	// tracking serves only GET /t/{token} on [tracking] listen; nil
	// when that is not configured (the main listener answers it too).
	tracking *http.Server
	// metrics serves only /metrics on [metrics] listen; nil when that is
	// empty (then /metrics is on the main listener, operator token only).
	metrics *http.Server
	// bounces is the [bounces] listener; nil when it is off.
	bounces *bounce.Listener
	// node is this process in cluster mode (cluster.go); nil single node.
	node      *cluster.Node
	startedAt time.Time
	// gates are cluster-wide quotas and shared breaker health
	// (cluster_quota.go); nil single node.
	gates *clusterGates
	// sendsPerMinute is [limits] sends_per_minute as last (re)loaded:
	// the cluster's per-credential limit reads it at each send.
	sendsPerMinute atomic.Int64
}

// httpReadTimeout bounds reading one authenticated request on the main
// listener: a 35 MB send on a slow link needs minutes. Headers must still
// arrive within 10 s, and a body within [http] unauthenticated_body_timeout
// until its credential is checked.
const httpReadTimeout = 10 * time.Minute

func (d *daemon) ready() error {
	if !d.running.Load() {
		return errors.New("not running")
	}
	return nil
}

func serve(path string, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "config invalid: %v\n", err)
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.file.LogLevel))
	// Message lines are written in batches (logoutput.go); the rest, and
	// what start prints (a generated root key), at once and in order.
	logOut := newLogOutput(stderr)
	defer logOut.Close()
	stderr = logOut
	logger := newDaemonLogger(logOut, &slog.HandlerOptions{Level: level})
	if path := os.Getenv("SMTPMUX_CPUPROFILE"); path != "" {
		// A development aid for bench/: profile the whole run.
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if os.Getenv("GOGC") == "" {
		// Collect at +50 % until mail flows (internal/gctune, started
		// with the background work): a quiet daemon stays small, a busy
		// one spends less CPU on collections. GOGC overrides both.
		debug.SetGCPercent(50)
	}
	if path := os.Getenv("SMTPMUX_MEMPROFILE"); path != "" {
		// The same for memory: allocations of the whole run, written at exit.
		defer func() {
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	starting := make(chan struct{})
	go sdExtendStart(starting, startKeepalive)
	d, err := start(cfg, logger, stderr)
	close(starting)
	if d != nil {
		d.logLevel = level
	}
	if err != nil {
		logger.Error("start failed", "err", err)
		return 1
	}
	sdNotify("READY=1")
	stopWatchdog := make(chan struct{})
	go sdWatchdog(stopWatchdog, d.ready)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			d.reload(path)
			continue
		}
		logger.Info("shutting down", "signal", sig.String())
		go func() {
			// A second signal exits at once. Mail that got its 250 is
			// already durable, and in-flight attempts are retried at the
			// next start.
			<-sigs
			logger.Warn("second signal, exiting now")
			logOut.Flush() // os.Exit runs no defers
			os.Exit(1)
		}()
		break
	}
	sdNotify("STOPPING=1")
	close(stopWatchdog)
	d.shutdown()
	logger.Info("stopped")
	return 0
}

func parseLevel(level string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by loadConfig
	return l
}

// start builds the daemon in the order its parts depend on each other,
// binds every listener, and only then creates a first root key and starts
// serving; a failure at any step closes what the earlier ones opened.
func start(cfg *config, logger *slog.Logger, stderr io.Writer) (*daemon, error) {
	d, key, sealer, err := openDaemon(cfg, logger)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*daemon, error) {
		d.gates.close()
		if d.node != nil {
			d.node.Close()
		}
		d.store.Close()
		return nil, err
	}
	d.startedAt = time.Now().UTC()
	if err := d.joinCluster(sealer); err != nil {
		return fail(err)
	}
	d.gates = d.newClusterGates()
	team, err := d.firstTeam()
	if err != nil {
		return fail(fmt.Errorf("bootstrap: %w", err))
	}
	upstreamTLS, err := d.loadTLS()
	if err != nil {
		return fail(err)
	}
	promReg, metrics := newMetrics()
	connector, err := d.buildDelivery(key, sealer, upstreamTLS, metrics)
	if err != nil {
		return fail(err)
	}
	promReg.MustRegister(stateCollector{st: d.store, sched: d.sched, reg: d.reg})
	if d.node != nil {
		promReg.MustRegister(clusterCollector{d.node}, quotaCollector{d.gates.quota})
	}
	if err := d.recover(); err != nil {
		return fail(err)
	}
	d.buildSMTP(metrics)
	api := d.buildAPI(sealer, connector, d.sesHook(key, metrics))
	lns, err := d.listenHTTP(api, promReg)
	if err != nil {
		return fail(err)
	}
	if err := d.smtp.Start(); err != nil {
		lns.close()
		return fail(err)
	}
	if err := d.startBounces(key, metrics); err != nil {
		lns.close()
		d.smtp.Shutdown(context.Background())
		return fail(err)
	}
	// Every listener is bound: only now can a new root key reach its
	// owner through a daemon that runs.
	if err := d.firstRootKey(team, stderr); err != nil {
		lns.close()
		d.smtp.Shutdown(context.Background())
		d.stopBounces(context.Background())
		return fail(fmt.Errorf("bootstrap root key: %w", err))
	}
	d.serveHTTP(lns)
	d.runBackground()
	d.running.Store(true)
	logger.Info("smtpmux started", "version", version, "data_dir", cfg.dataDir)
	return d, nil
}

// openDaemon opens the data directory, the secret key and the store.
func openDaemon(cfg *config, logger *slog.Logger) (*daemon, string, *store.Sealer, error) {
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return nil, "", nil, fmt.Errorf("data_dir: %w", err)
	}
	key, err := secretKey(cfg)
	if err != nil {
		return nil, "", nil, fmt.Errorf("secret_key: %w", err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := store.Open(filepath.Join(cfg.dataDir, "smtpmux.db"), 2*time.Second, store.WithLogger(logger),
		store.WithSoftBounceLimit(cfg.file.Bounces.SoftBounceLimit), store.WithHistoryMoveAfter(cfg.moveAfter))
	if errors.Is(err, store.ErrInUse) {
		return nil, "", nil, fmt.Errorf("%w (is another smtpmux running on this data_dir?)", err)
	}
	if err != nil {
		return nil, "", nil, err
	}
	return &daemon{cfg: cfg, log: logger, store: st, certs: &certStore{}, done: make(chan struct{})}, key, sealer, nil
}

// loadTLS loads (or makes and keeps) the listeners' certificate and
// returns the TLS configuration for upstream connections.
func (d *daemon) loadTLS() (*tls.Config, error) {
	cfg := d.cfg
	cert, certPath, err := loadCert(cfg.file.SMTP.TLSCertFile, cfg.file.SMTP.TLSKeyFile, cfg.file.Hostname, cfg.dataDir)
	if err != nil {
		return nil, err
	}
	d.certs.set(cert)
	// The fingerprint lets a client pin the certificate, or check the file
	// it was given to trust (README, "Trusting the certificate").
	d.log.Info("tls certificate", "file", certPath, "sha256", certFingerprint(cert))
	return upstreamTLSConfig(cfg.file.Delivery.UpstreamCAFile)
}

// buildDelivery wires the provider registry, the webhooks and the
// scheduler; it returns the OAuth connector the API needs too.
func (d *daemon) buildDelivery(key string, sealer *store.Sealer, upstreamTLS *tls.Config, metrics *relay.Metrics) (*oauth.Connector, error) {
	cfg, st := d.cfg, d.store
	d.reg = relay.NewRegistry(st, sealer)
	if err := registerProviders(d.reg, cfg, upstreamTLS, d.log); err != nil {
		return nil, err
	}
	connector, err := newConnector(cfg, d.oauthStates(sealer))
	if err != nil {
		return nil, err
	}
	registerOAuthProviders(d.reg, connector, st, sealer)
	d.hooks = webhook.New(webhook.Options{Store: st, Sealer: sealer, Logger: d.log,
		AllowPrivateTargets: cfg.file.Webhooks.AllowPrivateTargets})
	schedCfg := relay.SchedulerConfig{
		RetrySchedule: cfg.retrySchedule, MaxInflight: cfg.file.Delivery.MaxInflight,
		AttemptTimeout: cfg.attemptTimeout,
		Managed:        relay.ManagedLimits{Hourly: cfg.file.Managed.HourlyLimit, Daily: cfg.file.Managed.DailyLimit},
		Metrics:        metrics,
		Shaper:         shaping.New(st, sealer, shaping.TrackingKey(key), d.log, shaping.WithLinkTTL(cfg.linkTTL)),
		Events:         d.hooks.Emit,
		VERP:           verpSigner(key), BounceDomain: cfg.file.Bounces.Domain, ReturnPathTTL: cfg.bounceTokenTTL,
		Deliverability: cfg.file.Bounces.thresholds(),
	}
	d.gates.schedulerConfig(&schedCfg) // cluster mode: quotas and breakers on etcd
	d.sched = relay.NewScheduler(schedCfg, st, d.reg, d.log, nil)
	return connector, nil
}

// recover cleans the spool of files no message owns and requeues the
// attempts the last stop interrupted.
func (d *daemon) recover() error {
	if n, err := d.store.SweepSpool(); err != nil {
		return fmt.Errorf("cleaning spool: %w", err)
	} else if n > 0 {
		d.log.Info("removed spool files of messages that were never accepted or already finished", "count", n)
	}
	if n, err := d.sched.Recover(); err != nil {
		return fmt.Errorf("recovering interrupted attempts: %w", err)
	} else if n > 0 {
		d.log.Info("requeued attempts interrupted by the last stop", "count", n)
	}
	return nil
}

// buildSMTP makes the inbound SMTP server (not yet listening).
func (d *daemon) buildSMTP(metrics *relay.Metrics) {
	cfg := d.cfg
	d.limiter = ratelimit.New(cfg.file.Limits.SendsPerMinute, time.Minute, nil)
	d.sendsPerMinute.Store(int64(cfg.file.Limits.SendsPerMinute))
	srvCfg := relay.Config{
		Hostname: cfg.file.Hostname, Listen: cfg.file.SMTP.Listen, ListenTLS: cfg.file.SMTP.ListenTLS,
		SuppressedAction:  cfg.file.Bounces.SuppressedAction,
		TLSConfig:         &tls.Config{GetCertificate: d.certs.get, MinVersion: tls.VersionTLS12},
		AllowInsecureAuth: cfg.file.SMTP.AllowInsecureAuth, MaxMessageBytes: cfg.file.SMTP.MaxMessageBytes,
		MaxRecipients: cfg.file.SMTP.MaxRecipients, ReadTimeout: cfg.readTimeout, WriteTimeout: cfg.writeTimeout,
		MaxConnections: cfg.file.SMTP.MaxConnections, AuthFailDelay: cfg.authFailDelay, AuthFailLimit: cfg.file.SMTP.AuthFailLimit,
		MaxConnectionsPerIP: cfg.file.SMTP.MaxConnsPerIP, PreAuthTimeout: cfg.preAuthTimeout, MaxJunkCommands: cfg.file.SMTP.MaxJunkCommands,
		Limiter: d.limiter, Metrics: metrics, BareNewlines: cfg.bareNewlines, NodeID: d.nodeID(),
		ProxyFrom: cfg.proxyFrom.smtp,
	}
	d.gates.serverConfig(&srvCfg, func() int { return int(d.sendsPerMinute.Load()) })
	d.smtp = relay.NewServer(srvCfg, d.store, d.reg, d.sched, d.log, nil)
}

// buildAPI makes the HTTP API on the relay's services.
func (d *daemon) buildAPI(sealer *store.Sealer, connector *oauth.Connector, sesHook http.Handler) *admin.Server {
	cfg := d.cfg
	return admin.New(admin.Options{
		Store: d.store, Sealer: sealer, Logger: d.log, Version: version, Ready: d.ready,
		OperatorToken: cfg.operatorToken, KeyRotationGrace: cfg.rotationGrace, DNSResolver: cfg.file.DNS.Resolver,
		Cluster: d.clusterOption(), StartedAt: d.startedAt, ClusterToken: d.clusterToken(),
		IdempotencyRecords: d.idempotencyRecords(),
		Deliverability:     cfg.file.Bounces.thresholds(), SESHook: sesHook,
		HTTP: admin.HTTPOptions{
			Deadlines:        httpapi.Deadlines{Unauthenticated: cfg.unauthBodyTimeout, Body: httpReadTimeout},
			AuthAttempts:     d.smtp,
			TrackingListener: cfg.file.Tracking.Listen != "",
			ReservedHosts:    listenHosts(cfg.file.HTTP.Listen, cfg.file.Tracking.Listen, cfg.file.Metrics.Listen),
		},
		Sending: sendapi.Config{Sender: relaySender{d.smtp}, Hostname: cfg.file.Hostname,
			MaxBytesInFlight: cfg.file.HTTP.MaxSendBytesInFlight, BodyTimeout: cfg.sendBodyTimeout},
		Providers: admin.ProviderOptions{
			Tester: relay.ProviderTester{Registry: d.reg, Recovered: d.sched.ProviderRecovered},
			OAuth:  oauthOption(connector), Health: d.sched.Health, Limit: cfg.file.Limits.ProvidersPerTeam,
			OAuthReturnTo:         dashboardAccounts(cfg.file.Dashboard.Enabled),
			AllowPrivateHosts:     cfg.file.Providers.AllowPrivateHosts,
			SESDefaultCredentials: cfg.file.Providers.SESDefaultCredentials,
		},
		Managed: admin.ManagedOptions{DailyLimit: cfg.file.Managed.DailyLimit, HourlyLimit: cfg.file.Managed.HourlyLimit,
			Usage: managedUsage(d.sched)},
		Webhooks: admin.WebhookOptions{Dispatcher: d.hooks, AllowPrivateTargets: cfg.file.Webhooks.AllowPrivateTargets},
		Hooks: admin.Hooks{OnLimitDecided: func(teamID, requestID, decision string) {
			d.sched.Wake(teamID) // a raised managed limit may let waiting mail go
			d.hooks.Emit(event.Event{Type: event.LimitRequestDecided, TeamID: teamID, At: time.Now().UTC(),
				Extra: map[string]any{"request_id": requestID, "decision": decision}})
		}},
	})
}

// dashboardAccounts is where the OAuth callback returns a browser: the
// dashboard's accounts page when the dashboard is on.
func dashboardAccounts(enabled bool) string {
	if enabled {
		return "/accounts"
	}
	return ""
}

// httpListeners are the bound HTTP listeners: the API, and the tracking
// and metrics listeners when configured.
type httpListeners struct{ api, tracking, metrics net.Listener }

func (l httpListeners) close() {
	for _, ln := range []net.Listener{l.api, l.tracking, l.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
}

// listenHTTP binds the HTTP listeners and makes their servers.
func (d *daemon) listenHTTP(api *admin.Server, promReg *prometheus.Registry) (httpListeners, error) {
	cfg := d.cfg
	var lns httpListeners
	ln, err := net.Listen("tcp", cfg.file.HTTP.Listen)
	if err != nil {
		return lns, fmt.Errorf("http listen %s: %w", cfg.file.HTTP.Listen, err)
	}
	// Both public-facing listeners are capped in connections, in all and
	// per client IP, so slow clients cannot take every file descriptor.
	limit := func(l net.Listener) net.Listener {
		return admin.LimitListener(l, cfg.file.HTTP.MaxConnections, cfg.file.HTTP.MaxConnectionsPerIP)
	}
	// A balancer's PROXY header is read first, so that the per-IP cap
	// and the per-address AUTH failure limit count the client.
	lns.api = limit(proxied.Listen(ln, proxied.Options{From: cfg.proxyFrom.http, MaxPending: cfg.file.HTTP.MaxConnections,
		Refused: func(remote net.Addr, err error) {
			d.log.Warn("http connection closed: PROXY protocol", "event", "proxy_refused", "remote", remote.String(), "err", err)
		}}))
	// With a [metrics] listener, /metrics is only there; without, it is on
	// this listener behind the operator token. Never open to tenants.
	var apiMetrics http.Handler
	if cfg.file.Metrics.Listen == "" {
		apiMetrics = metricsHandler(promReg)
	}
	var dash *dashboard.Dashboard
	if cfg.file.Dashboard.Enabled {
		dash = dashboard.New(dashboard.Options{API: api, Auth: api, IdleTimeout: cfg.dashboardIdle,
			SecureCookie: cfg.file.Dashboard.SecureCookie, Logger: d.log})
	}
	d.http = &http.Server{Handler: outerMux(api, apiMetrics, dash), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: httpReadTimeout, WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if addr := cfg.file.Tracking.Listen; addr != "" {
		tln, err := net.Listen("tcp", addr)
		if err != nil {
			lns.close()
			return httpListeners{}, fmt.Errorf("tracking listen %s: %w", addr, err)
		}
		lns.tracking = limit(tln)
		d.tracking = &http.Server{Handler: api.TrackingHandler(), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	}
	if addr := cfg.file.Metrics.Listen; addr != "" {
		mln, err := net.Listen("tcp", addr)
		if err != nil {
			lns.close()
			return httpListeners{}, fmt.Errorf("metrics listen %s: %w", addr, err)
		}
		lns.metrics = mln
		d.metrics = &http.Server{Handler: metricsMux(promReg), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	}
	return lns, nil
}

// serveHTTP starts serving on the bound HTTP listeners.
func (d *daemon) serveHTTP(lns httpListeners) {
	if lns.tracking != nil {
		go d.tracking.Serve(lns.tracking)
		d.log.Info("tracking listening", "addr", lns.tracking.Addr().String())
	}
	if lns.metrics != nil {
		go d.metrics.Serve(lns.metrics)
		d.log.Info("metrics listening", "addr", lns.metrics.Addr().String())
	}
	go func() {
		if err := d.http.Serve(lns.api); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "err", err)
		}
	}()
	d.log.Info("http listening", "addr", lns.api.Addr().String())
}

// runBackground starts the scheduler, webhook deliveries, the retention
// sweep and the DNS re-check.
func (d *daemon) runBackground() {
	cfg := d.cfg
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.sched.Run(ctx); close(d.done) }()
	d.gates.watchHealth(d.sched)
	// Webhook deliveries and the retention sweep stop after the scheduler
	// (which may still emit events while it drains), before the store.
	bgCtx, bgCancel := context.WithCancel(context.Background())
	d.stopBackground = bgCancel
	d.background.Add(3)
	go func() { defer d.background.Done(); d.hooks.Run(bgCtx) }()
	if os.Getenv("GOGC") == "" {
		tuner := gctune.New(d.store.ForegroundWrites)
		d.background.Add(1)
		go func() { defer d.background.Done(); tuner.Run(bgCtx) }()
	}
	sweeper := jobs.NewSweeper(d.store, d.log, nil, cfg.bodyRetention, cfg.logRetention)
	go func() { defer d.background.Done(); sweeper.Run(bgCtx) }()
	// The DNS re-check of domains; a pass cut by shutdown records nothing.
	recheck := jobs.NewDomainChecker(d.store, cfg.file.DNS.Resolver, d.log, nil, cfg.recheckInterval)
	go func() {
		defer d.background.Done()
		if d.node != nil {
			// Once per cluster: the elected node re-checks every domain.
			d.node.Lead(bgCtx, "domain-recheck", recheck.Run)
			return
		}
		recheck.Run(bgCtx)
	}()
}

func (d *daemon) shutdown() {
	d.running.Store(false)
	grace := d.cfg.shutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.smtp.Shutdown(ctx); err != nil {
		d.log.Warn("smtp sessions cut at shutdown", "err", err)
	}
	d.stopBounces(ctx)
	d.cancel()
	<-d.done
	d.sched.Stop(ctx)
	d.stopBackground()
	d.background.Wait()
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	d.http.Shutdown(hctx)
	if d.tracking != nil {
		d.tracking.Shutdown(hctx)
	}
	if d.metrics != nil {
		d.metrics.Shutdown(hctx)
	}
	d.reg.Close()
	// The scheduler drained and no listener takes mail: hand back the
	// unused quota grants while the etcd client is still open.
	d.gates.close()
	if d.node != nil {
		// After everything that writes the state of record stopped,
		// before the store it writes into.
		d.node.Close()
	}
	if err := d.store.Close(); err != nil {
		d.log.Error("closing store", "err", err)
	}
}

// reload applies a SIGHUP: the config file is read and validated again; if
// it is invalid, the running configuration stays as it was. Certificates,
// the log level and the per-credential send limit change in place; other
// keys (listeners, data_dir) need a restart, which the log says.
func (d *daemon) reload(path string) {
	cfg, err := loadConfig(path)
	if err != nil {
		d.log.Error("reload refused: config invalid; keeping the running configuration", "err", err)
		return
	}
	// data_dir itself changes only at a restart.
	cert, certPath, err := loadCert(cfg.file.SMTP.TLSCertFile, cfg.file.SMTP.TLSKeyFile, cfg.file.Hostname, d.cfg.dataDir)
	if err != nil {
		d.log.Error("reload refused: TLS certificate unusable; keeping the running configuration", "err", err)
		return
	}
	d.certs.set(cert)
	d.log.Info("tls certificate", "file", certPath, "sha256", certFingerprint(cert))
	d.logLevel.Set(parseLevel(cfg.file.LogLevel))
	d.limiter.SetLimit(cfg.file.Limits.SendsPerMinute)
	d.sendsPerMinute.Store(int64(cfg.file.Limits.SendsPerMinute))
	if !sameStrings(cfg.file.SMTP.Listen, d.cfg.file.SMTP.Listen) || !sameStrings(cfg.file.SMTP.ListenTLS, d.cfg.file.SMTP.ListenTLS) ||
		!reflect.DeepEqual(cfg.file.HTTP, d.cfg.file.HTTP) || !sameStrings(cfg.file.SMTP.ProxyProtocolFrom, d.cfg.file.SMTP.ProxyProtocolFrom) ||
		cfg.file.Metrics != d.cfg.file.Metrics || cfg.file.Tracking != d.cfg.file.Tracking ||
		cfg.dataDir != d.cfg.dataDir {
		d.log.Warn("listeners, proxy_protocol_from, [http], [metrics], [tracking] and data_dir changed in the file; they take effect at the next restart")
	}
	d.log.Info("configuration reloaded", "log_level", cfg.file.LogLevel, "sends_per_minute", cfg.file.Limits.SendsPerMinute)
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// upstreamTLSConfig trusts the system roots plus an optional extra CA file
// (a private relay's CA, or a test upstream's self-signed certificate).
func upstreamTLSConfig(caFile string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("delivery.upstream_ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("delivery.upstream_ca_file: no PEM certificate in %s", caFile)
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// listenHosts are the host parts of listen addresses (names or IPs; empty
// ones skipped): names the daemon answers as, which no team may claim as
// its tracking domain.
func listenHosts(addrs ...string) []string {
	var out []string
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			out = append(out, h)
		}
	}
	return out
}
