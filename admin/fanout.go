package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
)

// Cluster mode: the reports of the team's mail (GET /emails/logs,
// /emails/metrics, /providers/usage) answer for the whole cluster. Each
// node holds only the mail it accepted, so the node asked (the one the
// balancer picked) asks every other registered node for its part with the
// caller's own credential, and merges.
//
// Why the caller's credential and not a team ID vouched for by the cluster
// token: every node authenticates the key and scopes the answer to its
// team itself, exactly as for a client, so a node-to-node request can
// never read more than the caller could. The cluster token (when set)
// only proves the request is a node's: such a request is answered from
// the node's own mail (never fanned out again) and is not charged to the
// key's rate a second time. A request that says it is a node's without
// the token is refused (forgedNode). With no cluster_token configured,
// the header alone marks a node's request; a client who sets it gets its
// own team's part of one node, nothing more.

// Bounds of one fan-out. Every node is asked at once (up to
// fanoutParallel at a time), each under fanoutNodeTimeout, and the whole
// fan-out under fanoutTimeout and the client's request.
const (
	fanoutNodeTimeout = 5 * time.Second
	fanoutTimeout     = 10 * time.Second
	fanoutParallel    = 8
)

// fanout is a fan-out under way: wait returns each other node's answer
// (the raw 200 envelope), or an error the client gets as it is.
type fanout struct {
	done   chan struct{}
	bodies [][]byte
	err    error
}

// wait blocks until every node answered or the fan-out gave up.
func (f *fanout) wait() ([][]byte, error) {
	<-f.done
	return f.bodies, f.err
}

// fanOut starts asking every other node for this request's path with
// query, and returns at once (the caller computes its own part
// meanwhile). It returns nil when the request is not to be fanned out:
// single node (no cost beyond this check), or a request another node sent.
func (s *Server) fanOut(c *call, query url.Values) *fanout {
	return s.fanOutPath(c, c.r.URL.Path, query)
}

// fanOutPath is fanOut asking the other nodes for GET path instead of
// this request's own path: a report another endpoint carries (the
// managed account's usage in GET /providers/limits, asked by a POST).
func (s *Server) fanOutPath(c *call, path string, query url.Values) *fanout {
	if s.opts.Cluster == nil || s.fromNode(c.r) {
		return nil
	}
	f := &fanout{done: make(chan struct{})}
	auth := c.r.Header.Get("Authorization")
	path += "?" + query.Encode()
	ctx := c.r.Context()
	go func() {
		defer close(f.done)
		ctx, cancel := context.WithTimeout(ctx, fanoutTimeout)
		defer cancel()
		peers, err := s.opts.Cluster.Peers(ctx)
		if err != nil {
			s.log.Warn("fan-out: cannot list the nodes", "request_id", c.reqID, "err", err)
			f.err = &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeClusterUnavailable, Retryable: true,
				RetryAfter: 5 * time.Second, Message: "the cluster's nodes cannot be listed; retry later"}
			return
		}
		f.bodies, f.err = s.askAll(ctx, c.reqID, peers, path, auth)
	}()
	return f
}

// askAll asks each peer for path, at most fanoutParallel at a time. Any
// node that does not answer 200 fails the whole answer: a report without
// one node's mail would look complete and be wrong (a log page could even
// move its cursor past that node's messages for good).
func (s *Server) askAll(ctx context.Context, reqID string, peers []NodeInfo, path, auth string) ([][]byte, error) {
	bodies := make([][]byte, len(peers))
	failed := make([]string, len(peers))
	sem := make(chan struct{}, fanoutParallel)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if p.AdvertiseURL == "" {
				s.log.Warn("fan-out: node has no advertise_url", "request_id", reqID, "node", p.NodeID)
				failed[i] = p.NodeID
				return
			}
			nctx, cancel := context.WithTimeout(ctx, fanoutNodeTimeout)
			defer cancel()
			status, body, err := s.opts.Cluster.Ask(nctx, p.AdvertiseURL, path, auth)
			if err != nil || status != http.StatusOK {
				s.log.Warn("fan-out: node did not answer", "request_id", reqID, "node", p.NodeID, "status", status, "err", err)
				failed[i] = p.NodeID
				return
			}
			bodies[i] = body
		}()
	}
	wg.Wait()
	failed = slices.DeleteFunc(failed, func(s string) bool { return s == "" })
	if len(failed) > 0 {
		return nil, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeServiceUnavailable, Retryable: true,
			RetryAfter: 5 * time.Second, Message: fmt.Sprintf("node %s did not answer, and the answer would lack the mail it holds; retry later",
				strings.Join(failed, ", "))}
	}
	return bodies, nil
}

// nodeData decodes the data (and pagination) of a node's 200 envelope.
func nodeData(body []byte, data any) (*httpapi.Pagination, error) {
	var env struct {
		Data       json.RawMessage     `json:"data"`
		Pagination *httpapi.Pagination `json:"pagination"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(env.Data, data); err != nil {
		return nil, err
	}
	return env.Pagination, nil
}

// errNodeAnswer is a node's 200 answer this node cannot merge (another
// version, a broken proxy): the client gets a 503, the log the detail.
func (s *Server) errNodeAnswer(c *call, err error) error {
	s.log.Warn("fan-out: a node's answer cannot be merged", "request_id", c.reqID, "err", err)
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeServiceUnavailable, Retryable: true,
		RetryAfter: 5 * time.Second, Message: "a node's answer could not be merged; retry later"}
}
