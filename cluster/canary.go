package cluster

import (
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/store"
)

// canaryText is what the canary seals. Its value does not matter; that a
// node's secret_key opens it does.
const canaryText = "smtpmux cluster canary v1"

// ErrWrongSecretKey is CheckCanary's refusal: this node's secret_key is
// not the one the cluster's secrets are sealed with.
var ErrWrongSecretKey = errors.New("this node's secret_key cannot open the cluster's canary: every node must share the secret_key of the first node")

// CheckCanary makes sure this node can open the secrets other nodes
// sealed. The first node writes a sealed canary (create-only, so two first
// nodes cannot both win); every node after must open it. A node with
// another key would serve providers whose passwords it cannot read and
// seal new ones no other node can, so it must not start.
func (n *Node) CheckCanary(s *store.Sealer) error {
	key := n.cfg.Prefix + "canary"
	ctx, cancel := n.opCtx()
	defer cancel()
	sealed := s.Seal(canaryText)
	resp, err := n.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(sealed))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return unavailable("checking the secret_key canary", err)
	}
	if resp.Succeeded {
		n.log.Info("wrote the cluster's secret_key canary", "key", key)
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("canary %s vanished while it was read; start again", key)
	}
	plain, err := s.Open(kvs[0].Value)
	if err != nil || plain != canaryText {
		return fmt.Errorf("%w (canary %s)", ErrWrongSecretKey, key)
	}
	return nil
}
