// Package health shares the providers' breaker state between the nodes of
// a cluster on etcd: a provider the breaker pulled on one node is pulled
// on all, and failures seen by different nodes count together (three
// connection failures on three nodes pull it, as three on one node would).
//
// Each provider's state is one key, <prefix>health/<provider id>, holding
// routing.Breaker as JSON, on a lease that ends a minute after the state
// stops mattering (the end of the pull, or the last failure leaving the
// 5-minute span), so etcd forgets it by itself. Writes happen only when
// the state changes (relay.BreakerStore's contract): a failure that feeds
// the breaker, the first success after failures, an operator's reset.
// Every node watches the prefix and applies what others wrote to its own
// copy (relay.Scheduler.ApplyBreaker).
//
// A provider's `error` status after an auth fault is not breaker state: it
// is the provider record's status, state of record, kept by the cluster
// store like any provider write.
//
// When etcd is unreachable UpdateBreaker fails and the relay keeps its own
// in-memory state (it logs the failed write): pulls still happen, per
// node, and a node that comes back to etcd catches up from the watch.
//
// Wiring (cmd/smtpmux, cluster mode):
//
//	hs := health.New(cli, cfg.KeyPrefix, cfg.NodeID, time.Now, logger)
//	schedCfg.Breakers = hs              // relay.BreakerStore
//	sched := relay.NewScheduler(schedCfg, ...)
//	go hs.Watch(ctx, sched.ApplyBreaker)
package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/routing"
)

// Shared is the breaker state of every provider, in etcd.
type Shared struct {
	cli     *clientv3.Client
	prefix  string // <key prefix>health/
	node    string
	now     func() time.Time
	log     *slog.Logger
	timeout time.Duration
}

// New returns the shared breaker state of node nodeID on cli under
// prefix (e.g. "/smtpmux/"). now nil is time.Now.
func New(cli *clientv3.Client, prefix, nodeID string, now func() time.Time, log *slog.Logger) *Shared {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Shared{cli: cli, prefix: prefix + "health/", node: nodeID, now: now, log: log, timeout: 2 * time.Second}
}

// Breakers returns every stored state (relay.BreakerStore; at start).
func (s *Shared) Breakers() (map[string]routing.Breaker, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]routing.Breaker{}
	for _, kv := range resp.Kvs {
		var b routing.Breaker
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			s.log.Warn("unreadable breaker state ignored", "key", string(kv.Key), "err", err)
			continue
		}
		out[strings.TrimPrefix(string(kv.Key), s.prefix)] = b
	}
	return out, nil
}

// UpdateBreaker applies fn to provider id's stored state in a transaction
// that compares the key's ModRevision (retried when another node wrote
// in between), and returns the stored result (relay.BreakerStore).
func (s *Shared) UpdateBreaker(id string, fn func(*routing.Breaker)) (routing.Breaker, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	key := s.prefix + id
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return routing.Breaker{}, err
		}
		var b routing.Breaker
		rev := int64(0)
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &b); err != nil {
				b = routing.Breaker{} // unreadable: start afresh rather than never write again
			}
		}
		fn(&b)
		val, err := json.Marshal(b)
		if err != nil {
			return routing.Breaker{}, err
		}
		lease, err := s.cli.Grant(ctx, s.ttl(b))
		if err != nil {
			return routing.Breaker{}, err
		}
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).Commit()
		if err != nil {
			return routing.Breaker{}, err
		}
		if tr.Succeeded {
			return b, nil
		}
		// Another node wrote first; its lease is unused now.
		s.cli.Revoke(ctx, lease.ID)
	}
}

// ttl is how long the state matters, in seconds: until the pull ends or
// the last failure leaves the breaker's span, plus a minute (a node whose
// clock runs slightly behind still finds it). An empty state (a reset or
// a success) lives a minute, long enough for every watcher to see it.
func (s *Shared) ttl(b routing.Breaker) int64 {
	end := b.PulledUntil
	if n := len(b.Failures); n > 0 {
		if t := b.Failures[n-1].Add(routing.BreakerSpan); t.After(end) {
			end = t
		}
	}
	return int64(max(end.Sub(s.now()), 0)/time.Second) + 60
}

// Watch applies every state another node stores to this node's copy
// through apply (relay.Scheduler.ApplyBreaker), until ctx ends; after a
// lost watch (etcd unreachable) it reads everything again and resumes.
// A key that expires is not applied: its pull has ended by its own time,
// and each node's half-open state runs its course locally.
func (s *Shared) Watch(ctx context.Context, apply func(id string, b routing.Breaker)) {
	for ctx.Err() == nil {
		ctx2, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(ctx2, s.prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second): // etcd unreachable: try again
			}
			continue
		}
		for _, kv := range resp.Kvs {
			s.applyKV(kv.Key, kv.Value, apply)
		}
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					s.applyKV(ev.Kv.Key, ev.Kv.Value, apply)
				}
			}
		}
	}
}

func (s *Shared) applyKV(key, value []byte, apply func(string, routing.Breaker)) {
	var b routing.Breaker
	if err := json.Unmarshal(value, &b); err != nil {
		return
	}
	apply(strings.TrimPrefix(string(key), s.prefix), b)
}
