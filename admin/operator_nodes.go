package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// NodeInfo is one smtpmux node as GET /operator/nodes shows it.
type NodeInfo struct {
	NodeID       string    `json:"node_id"`
	AdvertiseURL string    `json:"advertise_url"`
	Version      string    `json:"version"`
	StartedAt    time.Time `json:"started_at"`
	// Self marks the node that answered.
	Self bool `json:"self"`
}

// ClusterView is what the API shows of cluster mode (cmd adapts the
// cluster package to it; nil: single node).
type ClusterView interface {
	// Nodes lists the registered nodes.
	Nodes(ctx context.Context) ([]NodeInfo, error)
	// Membership names this node and its standing: "member", or
	// "degraded" while etcd cannot be reached.
	Membership() (nodeID, state string)
	// Forward sends a GET of path to node nodeID's API with the caller's
	// Authorization and returns that node's answer as it is (ok false:
	// no such node registered).
	Forward(ctx context.Context, nodeID, path, authorization string) (status int, body []byte, ok bool, err error)
	// Peers lists the other registered nodes, for a fan-out; while etcd
	// cannot be reached, the last list it got.
	Peers(ctx context.Context) ([]NodeInfo, error)
	// Ask sends a GET of path to the node whose API is at base (its
	// advertise_url), as Forward does.
	Ask(ctx context.Context, base, path, authorization string) (status int, body []byte, err error)
	// WaitApplied returns once this node's view holds etcd revision rev,
	// or ctx ends.
	WaitApplied(ctx context.Context, rev int64)
}

// RevisionHeader carries, on a forwarded request, the etcd revision the
// forwarding node's view held: the receiver catches up to it before it
// authenticates, so a key or record the caller just made through the
// first node is known to the second (read-your-writes across the hop).
const RevisionHeader = "X-Smtpmux-Revision"

// maxCatchUp bounds the wait for RevisionHeader: a view that far behind
// answers from what it has.
const maxCatchUp = time.Second

// TokenHeader carries [cluster] cluster_token on node-to-node requests.
const TokenHeader = "X-Smtpmux-Cluster-Token"

// fromNode reports whether r came from another node: it says so, and
// carries the cluster token when one is configured. Only such a request
// makes this node wait for a revision (a client cannot make it wait) or
// stops it forwarding.
func (s *Server) fromNode(r *http.Request) bool {
	if s.opts.Cluster == nil || r.Header.Get(ForwardedHeader) == "" {
		return false
	}
	if s.opts.ClusterToken == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get(TokenHeader)), []byte(s.opts.ClusterToken)) == 1
}

// provenNode reports a request the cluster token proves is another
// node's (not merely says so: without a token configured, anyone can). The
// asking node already counted the client's credential against the client's
// own rate and address, so this node does not count it again: charging
// the asking node's address for a key that failed here (revoked in
// between) would let one tenant lock every client of that node out.
func (s *Server) provenNode(r *http.Request) bool {
	return s.opts.ClusterToken != "" && s.fromNode(r)
}

// forgedNode reports a request that says another node sent it but lacks
// the cluster token. It is refused rather than served as a client's: the
// node-to-node answers (this node's part only, no fan-out, no rate charge)
// are for nodes, and a node configured with the wrong token shows at once
// instead of answering with part of the cluster.
func (s *Server) forgedNode(r *http.Request) bool {
	return s.opts.Cluster != nil && r.Header.Get(ForwardedHeader) != "" && !s.fromNode(r)
}

// errForgedNode answers a forgedNode request.
func errForgedNode() error {
	return httpapi.ErrForbidden("a node-to-node request needs this cluster's cluster_token")
}

// catchUp waits (briefly) for the revision a forwarded request names.
func (s *Server) catchUp(r *http.Request) {
	if !s.fromNode(r) {
		return
	}
	rev, err := strconv.ParseInt(r.Header.Get(RevisionHeader), 10, 64)
	if err != nil || rev <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxCatchUp)
	defer cancel()
	s.opts.Cluster.WaitApplied(ctx, rev)
}

// ForwardedHeader marks a request one node forwarded to another: the
// receiver answers it from its own store and never forwards it again.
const ForwardedHeader = "X-Smtpmux-Forwarded-By"

// forwardEmail answers GET /emails/{id} for a message another node
// accepted (its ID names that node) by asking that node, with the
// caller's own credential: the owning node authenticates it and checks
// the team itself, so forwarding grants nothing the caller lacks. handled
// is false when the message is not another node's to answer.
func (s *Server) forwardEmail(c *call, id string) (handled bool, err error) {
	if s.opts.Cluster == nil || s.fromNode(c.r) {
		return false, nil
	}
	owner := store.MessageNode(id)
	self, _ := s.opts.Cluster.Membership()
	if owner == "" || owner == self {
		return false, nil
	}
	status, body, ok, err := s.opts.Cluster.Forward(c.r.Context(), owner, "/api/v1/emails/"+id, c.r.Header.Get("Authorization"))
	if err != nil {
		s.log.Warn("forwarding to the owning node failed", "request_id", c.reqID, "node", owner, "err", err)
		return true, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeServiceUnavailable, Retryable: true,
			RetryAfter: 5 * time.Second, Message: "the node that accepted this email cannot be reached; retry later"}
	}
	if !ok {
		return false, nil
	}
	// The answer is the owning node's, but under this request's ID: the
	// one the client sees in X-Request-Id and quotes (this node's log
	// names the owner).
	var env map[string]json.RawMessage
	if json.Unmarshal(body, &env) == nil {
		env["meta"], _ = json.Marshal(map[string]string{"request_id": c.reqID})
		if b, err := json.Marshal(env); err == nil {
			body = b
		}
	}
	s.log.Info("answered by the owning node", "request_id", c.reqID, "node", owner, "status", status)
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	c.w.Write(body)
	return true, nil
}

// readyCluster is /readyz's cluster block. Quotas says whether the
// cluster quotas reach etcd; QuotaVouch is set only for another node
// asking (cluster/quota, peers.go): this node's word that it cannot.
type readyCluster struct {
	NodeID     string `json:"node_id"`
	State      string `json:"state"`
	Quotas     string `json:"quotas,omitempty"`
	QuotaVouch int64  `json:"quota_vouch,omitempty"`
	QuotaRev   int64  `json:"quota_rev,omitempty"`
	QuotaLive  int    `json:"quota_live,omitempty"`
}

// QuotasUnreachable is readyCluster.Quotas while the cluster quotas
// cannot reach etcd ("ok" otherwise).
const QuotasUnreachable = "etcd_unreachable"

// QuotaPeer is the part of a ClusterView that answers another node
// asking whether this one reaches etcd: asker is that node's ID ("" for
// a probe that is not a node), seq the number of this node's word that it
// cannot (0 when it can, or for a probe), rev the latest quota revision
// it knows of (the asker must have heard of everything up to it), live
// how many live nodes it counts (the asker divides its share by at least
// that many).
type QuotaPeer interface {
	AnswerPeer(asker string) (down bool, seq, rev int64, live int)
}

// listNodes is GET /operator/nodes: every node of the cluster, or this
// one alone in single-node mode.
func (s *Server) listNodes(c *call) error {
	if s.opts.Cluster == nil {
		c.ok(http.StatusOK, []NodeInfo{{NodeID: s.opts.Sending.Hostname, Version: s.opts.Version, StartedAt: s.opts.StartedAt, Self: true}})
		return nil
	}
	nodes, err := s.opts.Cluster.Nodes(c.r.Context())
	if err != nil {
		return err
	}
	if nodes == nil {
		nodes = []NodeInfo{}
	}
	c.ok(http.StatusOK, nodes)
	return nil
}
