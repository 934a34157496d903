package admin

// Cluster mode: the managed account's daily limit is one cluster-wide
// counter (recipients are reserved on it before the 250, on whichever
// node), but each node's live count (Options.Managed.Usage) knows only
// the mail that node accepted and sent. GET /providers/limits (and the
// snapshot a limit request answers with) would show a third of the
// usage on a three-node cluster, and a team at its limit would read
// "room left". So the node asked sums every node's part, as the reports
// do (fanout.go).
//
// Why not the quota counter in etcd: its value is what the nodes were
// *granted* in blocks, spent or not (a node holds up to a share of
// what is left until it idles), so as usage it would say "at limit"
// long before the team is. The fan-out costs one round trip per node and
// no etcd call; a single node does neither.

// providerLimitsPath is the endpoint whose shared_amazon_ses snapshot
// carries a node's part of the managed account's usage.
const providerLimitsPath = "/api/v1/providers/limits"

// add sums another node's part into u.
func (u *ManagedCounts) add(o ManagedCounts) {
	u.HourSent += o.HourSent
	u.HourReserved += o.HourReserved
	u.DaySent += o.DaySent
	u.DayReserved += o.DayReserved
}

// peerManagedCounts waits for fo (nil: single node, or a request another
// node sent: nothing to add) and sums the managed account's usage the
// other nodes report in their shared_amazon_ses snapshots.
func (s *Server) peerManagedCounts(c *call, fo *fanout) (ManagedCounts, error) {
	var sum ManagedCounts
	if fo == nil {
		return sum, nil
	}
	bodies, err := fo.wait()
	if err != nil {
		return sum, err
	}
	for _, b := range bodies {
		var part struct {
			Shared managedSESLimit `json:"shared_amazon_ses"`
		}
		if _, err := nodeData(b, &part); err != nil {
			return sum, s.errNodeAnswer(c, err)
		}
		sh := part.Shared
		// A node's usage is sent + reserved; the snapshot names both
		// figures and their sum, so the parts come back exactly.
		sum.add(ManagedCounts{DaySent: sh.Usage - sh.Reserved, DayReserved: sh.Reserved,
			HourSent: sh.Hourly.Usage - sh.Hourly.Reserved, HourReserved: sh.Hourly.Reserved})
	}
	return sum, nil
}
