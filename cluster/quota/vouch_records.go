package quota

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A voucher's reserves (peers.go) would live only in its memory: a voucher
// that restarts, or a node that joins, right after an outage would not
// know that an asker may have spent a share etcd has not heard of, and
// would grant it again. So a node that vouched writes what it told each
// asker to etcd (<prefix>quota-vouch/<node>) before its first grant once
// etcd answers again, and every node reads those records (at start with
// the windows, handback.go watchRev, then through its watch) and keeps the askers' shares out of its grants as
// the voucher does, until the askers' back markers settle them.

// vouchRecord is one asker's entry of a voucher's record.
type vouchRecord struct {
	Seq  int64 `json:"seq"`
	At   int64 `json:"at"` // unix milliseconds
	Live int   `json:"live"`
}

func (c *Cluster) vouchRecordPrefix() string { return c.prefix + "quota-vouch/" }

// saveVouches writes this node's vouches if it gave any since it last
// wrote them; refillNow calls it before it grants. c.mu is not held.
func (c *Cluster) saveVouches(ctx context.Context) error {
	c.mu.Lock()
	if !c.vouchUnsaved {
		c.mu.Unlock()
		return nil
	}
	rec := make(map[string]vouchRecord, len(c.vouchedTo))
	for asker, v := range c.vouchedTo {
		rec[asker] = vouchRecord{Seq: v.seq, At: v.at.UnixMilli(), Live: v.live}
	}
	c.mu.Unlock()
	lease, err := c.lease(ctx, c.now().Add(25*time.Hour))
	if err != nil {
		return err
	}
	b, _ := json.Marshal(rec) // plain integers and strings always encode
	if _, err := c.cli.Put(ctx, c.vouchRecordPrefix()+c.node, string(b), clientv3.WithLease(lease)); err != nil {
		return err
	}
	c.writes.Add(1)
	c.mu.Lock()
	// A vouch given while the write was on its way is written next time.
	c.vouchUnsaved = false
	for asker, v := range c.vouchedTo {
		if r, ok := rec[asker]; !ok || r.Seq != v.seq {
			c.vouchUnsaved = true
		}
	}
	c.mu.Unlock()
	return nil
}

// noteVouchRecord takes in voucher's record as read from etcd (value nil:
// deleted). c.mu is held.
func (c *Cluster) noteVouchRecord(voucher string, value []byte) {
	var rec map[string]vouchRecord
	if value == nil || json.Unmarshal(value, &rec) != nil {
		delete(c.recorded, voucher)
		return
	}
	out := make(map[string]vouch, len(rec))
	for asker, r := range rec {
		out[asker] = vouch{seq: r.Seq, at: time.UnixMilli(r.At), live: r.Live}
	}
	c.recorded[voucher] = out
}

// applyVouchRecord handles a watch event of a voucher's record. c.mu is
// not held.
func (c *Cluster) applyVouchRecord(ev *clientv3.Event) {
	voucher := strings.TrimPrefix(string(ev.Kv.Key), c.vouchRecordPrefix())
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Type == clientv3.EventTypeDelete {
		c.noteVouchRecord(voucher, nil)
		return
	}
	c.noteVouchRecord(voucher, ev.Kv.Value)
}

// activeVouches calls f with each vouch that may still stand for a share
// spent and not yet in etcd: this process's own and those of every
// record read (this node's earlier run's included), less those the
// askers' back markers settled. c.mu is held.
func (c *Cluster) activeVouches(f func(voucher, asker string, v vouch)) {
	for asker, v := range c.vouchedTo {
		f(c.node, asker, v)
	}
	for voucher, rec := range c.recorded {
		for asker, v := range rec {
			if voucher == c.node {
				if own, ok := c.vouchedTo[asker]; ok && own.seq >= v.seq {
					continue // the same vouch, counted above
				}
			}
			if c.settled[voucher+"\x00"+asker] >= v.seq {
				continue
			}
			f(voucher, asker, v)
		}
	}
}
