package admin

import (
	"context"
	"sync/atomic"
	"testing"
)

// fakeCluster is a test peer for ClusterView: it counts catch-up waits,
// forwards and fan-out asks; ask, when set, answers the asks (one peer,
// n2, is registered).
type fakeCluster struct {
	waits, forwards, asks atomic.Int32
	ask                   func(path, authorization string) (int, []byte, error)
}

func (f *fakeCluster) Nodes(context.Context) ([]NodeInfo, error) {
	return []NodeInfo{{NodeID: "n1", Self: true}}, nil
}
func (f *fakeCluster) Membership() (string, string) { return "n1", "member" }
func (f *fakeCluster) Forward(context.Context, string, string, string) (int, []byte, bool, error) {
	f.forwards.Add(1)
	return 404, []byte(`{"ok":false,"error":{"code":"not_found","message":"email not found","retryable":false},"meta":{"request_id":"x"}}`), true, nil
}
func (f *fakeCluster) Peers(context.Context) ([]NodeInfo, error) {
	return []NodeInfo{{NodeID: "n2", AdvertiseURL: "http://n2.invalid"}}, nil
}
func (f *fakeCluster) Ask(_ context.Context, _, path, authorization string) (int, []byte, error) {
	f.asks.Add(1)
	if f.ask == nil {
		return 200, []byte(`{"ok":true,"data":[],"pagination":{"has_more":false,"next_cursor":null},"meta":{"request_id":"x"}}`), nil
	}
	return f.ask(path, authorization)
}
func (f *fakeCluster) WaitApplied(context.Context, int64) { f.waits.Add(1) }

// TestForwardedNeedsClusterToken: only a request carrying the cluster
// token counts as forwarded by a node (it makes this node catch up and is
// not forwarded again); one that says it comes from a node without the
// token is refused, and neither waits nor forwards.
func TestForwardedNeedsClusterToken(t *testing.T) {
	fc := &fakeCluster{}
	e := newEnv(t, func(o *Options) { o.Cluster = fc; o.ClusterToken = "cluster-token-0123456789" })
	const other = "/api/v1/emails/eml_06h4ypqg9g000pkvz61y4tb3-n2" // n2's message
	for _, tok := range []string{"wrong", ""} {
		r := e.do("GET", other, nil, ForwardedHeader, "n9", RevisionHeader, "99", TokenHeader, tok)
		expectErr(t, r, 403, "insufficient_permissions", "")
	}
	if fc.waits.Load() != 0 || fc.forwards.Load() != 0 {
		t.Fatalf("wrong token: %d waits, %d forwards; want 0 and 0", fc.waits.Load(), fc.forwards.Load())
	}
	e.do("GET", other, nil)
	if fc.waits.Load() != 0 || fc.forwards.Load() != 1 {
		t.Fatalf("client request: %d waits, %d forwards; want 0 and 1", fc.waits.Load(), fc.forwards.Load())
	}
	e.do("GET", other, nil, ForwardedHeader, "n2", RevisionHeader, "99", TokenHeader, "cluster-token-0123456789")
	if fc.waits.Load() != 1 || fc.forwards.Load() != 1 {
		t.Fatalf("node request: %d waits, %d forwards; want 1 and 1", fc.waits.Load(), fc.forwards.Load())
	}
}
