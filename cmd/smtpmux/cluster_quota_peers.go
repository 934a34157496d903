package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/cluster/quota"
)

// peersDownOverHTTP is how a node whose etcd calls fail asks the other
// nodes whether theirs fail too (cluster/quota, peers.go): a GET of each
// peer's /readyz as node self, with the cluster token. Only if every peer
// answers that its quotas cannot reach etcd may this node spend its
// outage share; a peer that does not answer (dead, or cut off from this
// node too) counts as one that can.
func peersDownOverHTTP(self, token string) quota.PeersDown {
	return func(ctx context.Context, peers []quota.Peer) (map[string]quota.Vouch, bool) {
		seqs := make(map[string]quota.Vouch, len(peers))
		var mu sync.Mutex
		all := true
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, down := askPeerDown(ctx, p.URL, self, token)
				mu.Lock()
				defer mu.Unlock()
				if !down {
					all = false
					return
				}
				seqs[p.ID] = v
			}()
		}
		wg.Wait()
		return seqs, all
	}
}

// askPeerDown asks one peer; down is true only for a clear "cannot reach
// etcd" answer carrying its vouch number.
func askPeerDown(ctx context.Context, base, self, token string) (v quota.Vouch, down bool) {
	if base == "" {
		return v, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return v, false
	}
	req.Header.Set(admin.ForwardedHeader, self)
	if token != "" {
		req.Header.Set(admin.TokenHeader, token)
	}
	resp, err := forwardClient.Do(req)
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	var ans struct {
		Data struct {
			Cluster struct {
				Quotas string `json:"quotas"`
				Vouch  int64  `json:"quota_vouch"`
				Rev    int64  `json:"quota_rev"`
				Live   int    `json:"quota_live"`
			} `json:"cluster"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans) != nil {
		return v, false
	}
	c := ans.Data.Cluster
	return quota.Vouch{Seq: c.Vouch, Rev: c.Rev, Live: c.Live}, c.Quotas == admin.QuotasUnreachable && c.Vouch > 0
}
