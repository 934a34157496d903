package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	lineends "github.com/smtpmux/smtpmux/internal/crlf"
	"github.com/smtpmux/smtpmux/relay/bounce"
	smtpprov "github.com/smtpmux/smtpmux/relay/smtp"

	"github.com/smtpmux/smtpmux/cluster"
)

// fileConfig is the TOML file as written. Every key is documented, with
// its default, in config.example.toml; unknown keys are an error.
type fileConfig struct {
	DataDir          string `toml:"data_dir"`
	Hostname         string `toml:"hostname"`
	SecretKey        string `toml:"secret_key"`
	BootstrapRootKey string `toml:"bootstrap_root_key"`
	OperatorToken    string `toml:"operator_token"`
	LogLevel         string `toml:"log_level"`

	SMTP struct {
		Listen            []string `toml:"listen"`
		ListenTLS         []string `toml:"listen_tls"`
		TLSCertFile       string   `toml:"tls_cert_file"`
		TLSKeyFile        string   `toml:"tls_key_file"`
		AllowInsecureAuth bool     `toml:"allow_insecure_auth"`
		MaxMessageBytes   int64    `toml:"max_message_bytes"`
		MaxRecipients     int      `toml:"max_recipients"`
		BareNewlines      string   `toml:"bare_newlines"`
		MaxConnections    int      `toml:"max_connections"`
		ReadTimeout       string   `toml:"read_timeout"`
		WriteTimeout      string   `toml:"write_timeout"`
		AuthFailDelay     string   `toml:"auth_fail_delay"`
		AuthFailLimit     int      `toml:"auth_fail_limit"`
		MaxConnsPerIP     int      `toml:"max_connections_per_ip"`
		PreAuthTimeout    string   `toml:"pre_auth_timeout"`
		MaxJunkCommands   int      `toml:"max_junk_commands"`
		// ProxyProtocolFrom: balancers whose PROXY header is required
		// and trusted (config_proxy.go); empty = off.
		ProxyProtocolFrom []string `toml:"proxy_protocol_from"`
	} `toml:"smtp"`

	HTTP struct {
		Listen                     string `toml:"listen"`
		MaxConnections             int    `toml:"max_connections"`
		MaxConnectionsPerIP        int    `toml:"max_connections_per_ip"`
		UnauthenticatedBodyTimeout string `toml:"unauthenticated_body_timeout"`
		MaxSendBytesInFlight       int64  `toml:"max_send_bytes_in_flight"`
		SendBodyTimeout            string `toml:"send_body_timeout"`
		// ProxyProtocolFrom is [smtp]'s key for the API listener.
		ProxyProtocolFrom []string `toml:"proxy_protocol_from"`
	} `toml:"http"`

	Metrics struct {
		Listen string `toml:"listen"`
	} `toml:"metrics"`

	Managed struct {
		Backend     string `toml:"backend"`
		OutboxDir   string `toml:"outbox_dir"`
		HourlyLimit int    `toml:"hourly_limit"`
		DailyLimit  int    `toml:"daily_limit"`
		SES         struct {
			Region           string `toml:"region"`
			Endpoint         string `toml:"endpoint"`
			ConfigurationSet string `toml:"configuration_set"`
			AccessKeyID      string `toml:"access_key_id"`
			SecretAccessKey  string `toml:"secret_access_key"`
			// SNSTopicARN is the topic the managed account's SES
			// notifications come from (POST /hooks/ses/{id}).
			SNSTopicARN string `toml:"sns_topic_arn"`
		} `toml:"ses"`
	} `toml:"managed"`

	Delivery struct {
		RetrySchedule    []string `toml:"retry_schedule"`
		MaxInflight      int      `toml:"max_inflight"`
		ConnsPerProvider int      `toml:"connections_per_provider"`
		AttemptTimeout   string   `toml:"attempt_timeout"`
		UpstreamCAFile   string   `toml:"upstream_ca_file"`
		ShutdownGrace    string   `toml:"shutdown_grace"`
	} `toml:"delivery"`

	OAuth struct {
		Google    oauthClientConfig `toml:"google"`
		Microsoft oauthClientConfig `toml:"microsoft"`
	} `toml:"oauth"`

	DNS struct {
		Resolver        string `toml:"resolver"`
		RecheckInterval string `toml:"recheck_interval"`
	} `toml:"dns"`

	Tracking struct {
		Listen  string `toml:"listen"`
		LinkTTL string `toml:"link_ttl"`
	} `toml:"tracking"`

	// Dashboard is the web dashboard on the [http] listener.
	Dashboard struct {
		Enabled      bool   `toml:"enabled"`
		SessionIdle  string `toml:"session_idle"`
		SecureCookie bool   `toml:"secure_cookie"`
	} `toml:"dashboard"`

	Retention struct {
		Body      string `toml:"body"`
		Log       string `toml:"log"`
		MoveAfter string `toml:"move_after"`
	} `toml:"retention"`

	Webhooks struct {
		AllowPrivateTargets bool `toml:"allow_private_targets"`
	} `toml:"webhooks"`

	// Providers is the policy for teams' own providers (SPEC §10); both
	// default to false, the safe setting for a multi-tenant daemon.
	Providers struct {
		AllowPrivateHosts     bool `toml:"allow_private_hosts"`
		SESDefaultCredentials bool `toml:"ses_default_credentials"`
	} `toml:"providers"`

	Limits struct {
		ProvidersPerTeam int `toml:"providers_per_team"`
		SendsPerMinute   int `toml:"sends_per_minute"`
	} `toml:"limits"`

	// Keys: API key policy. RotationGrace is how long a rotated key's
	// previous secret keeps working (POST /api-keys/{id}/rotate).
	Keys struct {
		RotationGrace string `toml:"rotation_grace"`
	} `toml:"keys"`

	Bounces bouncesConfig `toml:"bounces"`
	// Cluster turns cluster mode on (etcd_endpoints set); see
	// config_cluster.go and docs/cluster.md.
	Cluster clusterFileConfig `toml:"cluster"`
}

// config is the validated, typed form the daemon runs on.
type config struct {
	file             fileConfig
	dataDir          string
	secretKey        string
	bootstrapRootKey string
	operatorToken    string
	readTimeout      time.Duration
	writeTimeout     time.Duration
	authFailDelay    time.Duration
	preAuthTimeout   time.Duration
	retrySchedule    []time.Duration
	bodyRetention    time.Duration
	logRetention     time.Duration
	moveAfter        time.Duration
	attemptTimeout   time.Duration
	shutdownGrace    time.Duration
	recheckInterval  time.Duration
	bareNewlines     lineends.Mode
	// unauthBodyTimeout bounds reading a request before its credential
	// has been checked ([http] unauthenticated_body_timeout).
	unauthBodyTimeout time.Duration
	// sendBodyTimeout is the grace an HTTP send's body has to arrive
	// beyond 32 KiB/s ([http] send_body_timeout).
	sendBodyTimeout time.Duration
	linkTTL         time.Duration
	bounceTokenTTL  time.Duration
	// rotationGrace is [keys] rotation_grace.
	rotationGrace time.Duration
	// dashboardIdle is [dashboard] session_idle.
	dashboardIdle time.Duration
	// cluster is the validated [cluster] section; nil in single-node mode.
	cluster *clusterConfig
	// proxyFrom are the parsed proxy_protocol_from lists (config_proxy.go).
	proxyFrom proxySources
}

func defaults() fileConfig {
	var c fileConfig
	c.DataDir = "./data"
	c.Hostname = "localhost"
	c.LogLevel = "info"
	c.SMTP.Listen = []string{"127.0.0.1:2525"}
	c.SMTP.MaxMessageBytes = 25 << 20
	c.SMTP.MaxRecipients = 50
	c.SMTP.BareNewlines = "reject"
	c.SMTP.MaxConnections = 1000
	c.SMTP.ReadTimeout = "2m"
	c.SMTP.WriteTimeout = "1m"
	c.SMTP.AuthFailDelay = "1s"
	c.SMTP.AuthFailLimit = 20
	c.SMTP.MaxConnsPerIP = 50
	c.SMTP.PreAuthTimeout = "30s"
	c.SMTP.MaxJunkCommands = 20
	c.HTTP.Listen = "127.0.0.1:8025"
	c.HTTP.MaxConnections = 1000
	c.HTTP.MaxConnectionsPerIP = 64
	c.HTTP.UnauthenticatedBodyTimeout = "10s"
	c.HTTP.MaxSendBytesInFlight = 64 << 20
	c.HTTP.SendBodyTimeout = "60s"
	c.Metrics.Listen = "127.0.0.1:9464"
	c.Tracking.LinkTTL = "365d"
	c.Dashboard.Enabled = true
	c.Dashboard.SessionIdle = "30m"
	c.Managed.Backend = "outbox"
	c.Managed.HourlyLimit = 2
	c.Managed.DailyLimit = 50
	c.Delivery.RetrySchedule = []string{"5m", "2h", "12h"}
	c.Delivery.MaxInflight = 256
	c.Delivery.ConnsPerProvider = smtpprov.DefaultMaxConns
	c.Delivery.AttemptTimeout = "10m"
	c.Delivery.ShutdownGrace = "30s"
	c.DNS.RecheckInterval = "6h"
	c.Retention.Body = "72h"
	c.Retention.Log = "30d"
	c.Retention.MoveAfter = "1m"
	c.Limits.ProvidersPerTeam = 200
	c.Limits.SendsPerMinute = 1800
	c.Keys.RotationGrace = "24h"
	bouncesDefaults(&c.Bounces)
	c.Cluster.KeyPrefix = "/smtpmux/"
	c.Cluster.IdempotencyTeamBytes = cluster.DefaultIdemTeamBytes
	return c
}

// configError names the offending key, so check-config can point at it.
type configError struct {
	key string
	msg string
}

func (e *configError) Error() string { return e.key + ": " + e.msg }

// loadConfig reads defaults, then the file (strictly), then the
// environment overrides, and validates the result.
func loadConfig(path string) (*config, error) {
	fc := defaults()
	md, err := toml.DecodeFile(path, &fc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %s", path, pe.ErrorWithPosition())
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, &configError{und[0].String(), "unknown key"}
	}
	for env, dst := range map[string]*string{
		"SMTPMUX_SECRET_KEY": &fc.SecretKey, "SMTPMUX_BOOTSTRAP_ROOT_KEY": &fc.BootstrapRootKey,
		"SMTPMUX_OPERATOR_TOKEN": &fc.OperatorToken,
		"SMTPMUX_ETCD_PASSWORD":  &fc.Cluster.EtcdPassword, "SMTPMUX_CLUSTER_TOKEN": &fc.Cluster.ClusterToken,
	} {
		if v := os.Getenv(env); v != "" {
			*dst = v
		}
	}
	return validate(fc)
}

func validate(fc fileConfig) (*config, error) {
	c := &config{file: fc, secretKey: fc.SecretKey, bootstrapRootKey: fc.BootstrapRootKey, operatorToken: fc.OperatorToken}
	for _, check := range []func(*fileConfig) error{
		c.validateTop, c.validateSMTP, c.validateHTTP, c.validateManaged, c.validateDelivery, c.validateRest, c.validateCluster,
		c.validateProxy,
	} {
		if err := check(&fc); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validateTop checks the top-level keys: where data lives, names and secrets.
func (c *config) validateTop(fc *fileConfig) error {
	if fc.DataDir == "" {
		return &configError{"data_dir", "must not be empty"}
	}
	c.dataDir = fc.DataDir
	if fc.Hostname == "" || strings.ContainsAny(fc.Hostname, " \t\r\n") {
		return &configError{"hostname", "must be a host name"}
	}
	if fc.SecretKey != "" && len(fc.SecretKey) < 16 {
		return &configError{"secret_key", "must be at least 16 characters (or empty to generate one)"}
	}
	if fc.BootstrapRootKey != "" && (!strings.HasPrefix(fc.BootstrapRootKey, "smx_root_") || len(fc.BootstrapRootKey) < 41) {
		return &configError{"bootstrap_root_key", "must start with smx_root_ and carry at least 32 characters after it"}
	}
	if fc.OperatorToken != "" && len(fc.OperatorToken) < 16 {
		return &configError{"operator_token", "must be at least 16 characters"}
	}
	switch fc.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &configError{"log_level", "must be debug, info, warn or error"}
	}
	return nil
}

// validateSMTP checks [smtp]: listeners, TLS, sizes, limits and timeouts (and the
// [delivery] timeouts parsed with them).
func (c *config) validateSMTP(fc *fileConfig) error {
	if len(fc.SMTP.Listen)+len(fc.SMTP.ListenTLS) == 0 {
		return &configError{"smtp.listen", "at least one SMTP listener is needed"}
	}
	for _, a := range fc.SMTP.Listen {
		if err := checkAddr(a); err != nil {
			return &configError{"smtp.listen", err.Error()}
		}
	}
	for _, a := range fc.SMTP.ListenTLS {
		if err := checkAddr(a); err != nil {
			return &configError{"smtp.listen_tls", err.Error()}
		}
	}
	if fc.SMTP.AllowInsecureAuth {
		// AUTH in clear text is for a client on the same host; on any
		// other interface it would send keys across the network readable.
		for _, a := range fc.SMTP.Listen {
			if !loopbackAddr(a) {
				return &configError{"smtp.allow_insecure_auth", fmt.Sprintf("true is only allowed when every smtp.listen address is loopback; %q is not (use STARTTLS, or listen on 127.0.0.1)", a)}
			}
		}
	}
	if (fc.SMTP.TLSCertFile == "") != (fc.SMTP.TLSKeyFile == "") {
		return &configError{"smtp.tls_cert_file", "tls_cert_file and tls_key_file go together"}
	}
	if fc.SMTP.MaxMessageBytes < 1024 || fc.SMTP.MaxMessageBytes > 100<<20 {
		return &configError{"smtp.max_message_bytes", "must be between 1024 and 104857600"}
	}
	if fc.SMTP.MaxRecipients < 1 || fc.SMTP.MaxRecipients > 1000 {
		return &configError{"smtp.max_recipients", "must be between 1 and 1000"}
	}
	var ok bool
	if c.bareNewlines, ok = lineends.ParseMode(fc.SMTP.BareNewlines); !ok {
		return &configError{"smtp.bare_newlines", `must be "reject" or "normalize"`}
	}
	if fc.SMTP.AuthFailLimit < 0 {
		return &configError{"smtp.auth_fail_limit", "must not be negative (0 turns the limit off)"}
	}
	if fc.SMTP.MaxConnections < 1 {
		return &configError{"smtp.max_connections", "must be at least 1"}
	}
	if fc.SMTP.MaxConnsPerIP < 1 || fc.SMTP.MaxConnsPerIP > fc.SMTP.MaxConnections {
		return &configError{"smtp.max_connections_per_ip", "must be between 1 and smtp.max_connections"}
	}
	if fc.SMTP.MaxJunkCommands < 0 {
		return &configError{"smtp.max_junk_commands", "must not be negative (0 turns the limit off)"}
	}
	var err error
	for _, d := range []struct {
		key string
		val string
		dst *time.Duration
	}{
		{"smtp.read_timeout", fc.SMTP.ReadTimeout, &c.readTimeout},
		{"smtp.write_timeout", fc.SMTP.WriteTimeout, &c.writeTimeout},
		{"smtp.auth_fail_delay", fc.SMTP.AuthFailDelay, &c.authFailDelay},
		{"smtp.pre_auth_timeout", fc.SMTP.PreAuthTimeout, &c.preAuthTimeout},
		{"delivery.attempt_timeout", fc.Delivery.AttemptTimeout, &c.attemptTimeout},
		{"delivery.shutdown_grace", fc.Delivery.ShutdownGrace, &c.shutdownGrace},
	} {
		if *d.dst, err = time.ParseDuration(d.val); err != nil || *d.dst < 0 {
			return &configError{d.key, fmt.Sprintf("%q is not a duration like \"30s\"", d.val)}
		}
	}
	// Without a read deadline go-smtp sets none at all, so neither this
	// nor pre_auth_timeout would ever close a silent connection: a client
	// could hold its share of max_connections for good.
	if c.readTimeout == 0 {
		return &configError{"smtp.read_timeout", "must be more than 0 (\"2m\" by default): a silent client is closed after it"}
	}
	return nil
}

// validateHTTP checks [http], [metrics]: listeners, connection caps and body limits.
func (c *config) validateHTTP(fc *fileConfig) error {
	var err error
	if err := checkAddr(fc.HTTP.Listen); err != nil {
		return &configError{"http.listen", err.Error()}
	}
	if fc.HTTP.MaxConnections < 1 {
		return &configError{"http.max_connections", "must be at least 1"}
	}
	if fc.HTTP.MaxConnectionsPerIP < 1 || fc.HTTP.MaxConnectionsPerIP > fc.HTTP.MaxConnections {
		return &configError{"http.max_connections_per_ip", "must be between 1 and http.max_connections"}
	}
	if c.unauthBodyTimeout, err = time.ParseDuration(fc.HTTP.UnauthenticatedBodyTimeout); err != nil || c.unauthBodyTimeout <= 0 {
		return &configError{"http.unauthenticated_body_timeout", fmt.Sprintf("%q is not a positive duration like \"10s\"", fc.HTTP.UnauthenticatedBodyTimeout)}
	}
	if fc.HTTP.MaxSendBytesInFlight < 1<<20 {
		return &configError{"http.max_send_bytes_in_flight", "must be at least 1048576 (1 MiB)"}
	}
	if c.sendBodyTimeout, err = time.ParseDuration(fc.HTTP.SendBodyTimeout); err != nil || c.sendBodyTimeout <= 0 {
		return &configError{"http.send_body_timeout", fmt.Sprintf("%q is not a positive duration like \"60s\"", fc.HTTP.SendBodyTimeout)}
	}
	if c.dashboardIdle, err = time.ParseDuration(fc.Dashboard.SessionIdle); err != nil || c.dashboardIdle < time.Minute || c.dashboardIdle > 24*time.Hour {
		return &configError{"dashboard.session_idle", fmt.Sprintf("%q is not a duration between \"1m\" and \"24h\"", fc.Dashboard.SessionIdle)}
	}
	if fc.Metrics.Listen != "" {
		if err := checkAddr(fc.Metrics.Listen); err != nil {
			return &configError{"metrics.listen", err.Error()}
		}
		if fc.Metrics.Listen == fc.HTTP.Listen || fc.Metrics.Listen == fc.Tracking.Listen {
			return &configError{"metrics.listen", "must differ from http.listen and tracking.listen (empty serves /metrics on http.listen behind the operator token)"}
		}
	}
	return nil
}

// validateManaged checks [managed] and [oauth]: the managed account's backend and limits.
func (c *config) validateManaged(fc *fileConfig) error {
	switch fc.Managed.Backend {
	case "outbox":
		if fc.Managed.OutboxDir == "" {
			fc.Managed.OutboxDir = filepath.Join(fc.DataDir, "outbox")
			c.file.Managed.OutboxDir = fc.Managed.OutboxDir
		}
	case "ses":
		ms := fc.Managed.SES
		if ms.Region == "" {
			return &configError{"managed.ses.region", `is required when managed.backend = "ses"`}
		}
		if (ms.AccessKeyID == "") != (ms.SecretAccessKey == "") {
			return &configError{"managed.ses.access_key_id", "access_key_id and secret_access_key go together (or leave both empty for the AWS default credential chain)"}
		}
	default:
		return &configError{"managed.backend", fmt.Sprintf("%q is not available (use \"outbox\" or \"ses\")", fc.Managed.Backend)}
	}
	if t := fc.Managed.SES.SNSTopicARN; t != "" && !bounce.ValidTopicARN(t) {
		return &configError{"managed.ses.sns_topic_arn", "must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:ses-feedback"}
	}
	if fc.Managed.HourlyLimit < 0 || fc.Managed.DailyLimit < 0 {
		return &configError{"managed.hourly_limit", "limits must not be negative"}
	}
	for name, oc := range map[string]oauthClientConfig{"oauth.google": fc.OAuth.Google, "oauth.microsoft": fc.OAuth.Microsoft} {
		if oc.ClientID != "" && (oc.ClientSecret == "" || oc.RedirectURL == "") {
			return &configError{name + ".client_secret", "client_id, client_secret and redirect_url go together"}
		}
	}
	return nil
}

// validateDelivery checks [delivery]: the retry schedule and concurrency.
func (c *config) validateDelivery(fc *fileConfig) error {
	if len(fc.Delivery.RetrySchedule) == 0 {
		return &configError{"delivery.retry_schedule", "needs at least one step"}
	}
	for _, s := range fc.Delivery.RetrySchedule {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return &configError{"delivery.retry_schedule", fmt.Sprintf("%q is not a positive duration", s)}
		}
		c.retrySchedule = append(c.retrySchedule, d)
	}
	if fc.Delivery.MaxInflight < 1 || fc.Delivery.MaxInflight > 10000 {
		return &configError{"delivery.max_inflight", "must be between 1 and 10000"}
	}
	if fc.Delivery.ConnsPerProvider < 1 || fc.Delivery.ConnsPerProvider > 1000 {
		return &configError{"delivery.connections_per_provider", "must be between 1 and 1000"}
	}
	return nil
}

// validateRest checks [dns], [tracking], [retention], [limits] and [keys].
func (c *config) validateRest(fc *fileConfig) error {
	var err error
	if r := fc.DNS.Resolver; r != "" && net.ParseIP(strings.Trim(r, "[]")) == nil && checkAddr(r) != nil {
		return &configError{"dns.resolver", fmt.Sprintf("%q is not host:port or an IP address", r)}
	}
	if c.recheckInterval, err = time.ParseDuration(fc.DNS.RecheckInterval); err != nil || c.recheckInterval <= 0 {
		return &configError{"dns.recheck_interval", fmt.Sprintf("%q is not a positive duration", fc.DNS.RecheckInterval)}
	}
	if fc.Tracking.Listen != "" {
		if err := checkAddr(fc.Tracking.Listen); err != nil {
			return &configError{"tracking.listen", err.Error()}
		}
	}
	if c.linkTTL, err = parseDays(fc.Tracking.LinkTTL); err != nil || c.linkTTL <= 0 {
		return &configError{"tracking.link_ttl", fmt.Sprintf("%q is not a positive duration like \"365d\" or \"720h\"", fc.Tracking.LinkTTL)}
	}
	if err := c.validateBounces(&fc.Bounces); err != nil {
		return err
	}
	for _, r := range []struct {
		key, val string
		dst      *time.Duration
	}{{"retention.body", fc.Retention.Body, &c.bodyRetention}, {"retention.log", fc.Retention.Log, &c.logRetention}} {
		d, err := parseDays(r.val)
		if err != nil || d <= 0 {
			return &configError{r.key, fmt.Sprintf("%q is not a positive duration like \"72h\" or \"30d\"", r.val)}
		}
		*r.dst = d
	}
	// The mover's delay: at least a second (the mover looks once a
	// second), at most a day (the main file holds what waits).
	if d, err := parseDays(fc.Retention.MoveAfter); err != nil || d < time.Second || d > 24*time.Hour {
		return &configError{"retention.move_after", fmt.Sprintf("%q is not a duration from \"1s\" to \"24h\" like \"1m\"", fc.Retention.MoveAfter)}
	} else {
		c.moveAfter = d
	}
	if fc.Limits.SendsPerMinute < 1 {
		return &configError{"limits.sends_per_minute", "must be at least 1"}
	}
	if fc.Limits.ProvidersPerTeam < 0 {
		return &configError{"limits.providers_per_team", "must not be negative"}
	}
	// 0 is allowed: a rotation then ends the old secret at once. A week
	// at most, as for the per-request grace_period_seconds.
	if c.rotationGrace, err = parseDays(fc.Keys.RotationGrace); err != nil || c.rotationGrace < 0 || c.rotationGrace > 7*24*time.Hour {
		return &configError{"keys.rotation_grace", fmt.Sprintf("%q is not a duration from \"0s\" to \"7d\"", fc.Keys.RotationGrace)}
	}
	return nil
}

// loopbackAddr reports whether host:port a binds only loopback: a
// loopback IP or "localhost". An empty host (every interface) is not.
func loopbackAddr(a string) bool {
	host, _, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAddr validates a listen address as net.Listen will read it, so a
// typo fails check-config naming the key rather than serve at bind time.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", a, host)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", a)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("%q: port %d is out of range (0-65535)", a, n)
		}
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: %q is not a port number", a, port)
	}
	return nil
}

// validHostname reports whether h is a DNS name (letters, digits and
// hyphens in dot-separated labels) and not a mistyped IPv4 address.
func validHostname(h string) bool {
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	_, err := strconv.Atoi(labels[len(labels)-1])
	return err != nil // "127.0.0.300" is a bad IP, not a name
}

// parseDays is time.ParseDuration plus a whole-days form ("30d"), which
// retention periods are naturally written in.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days > 36500 {
			return 0, fmt.Errorf("bad day count %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
