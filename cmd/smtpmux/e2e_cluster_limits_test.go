package main

import (
	"testing"
)

// checkClusterManagedLimits: GET /providers/limits asked of any node
// reports the managed account's usage of the whole cluster, as its daily
// limit counts it: the team's used recipients were accepted over all
// nodes (round-robin), and each node alone holds only its part.
func checkClusterManagedLimits(t *testing.T, nodes []*proc, root string, used int) {
	t.Helper()
	for i, d := range nodes {
		shared, _ := mustAs(t, d, root, 200, "GET", "/providers/limits", nil)["shared_amazon_ses"].(map[string]any)
		if shared["usage"] != float64(used) || shared["sent_today"] != float64(used) || shared["is_at_limit"] != true {
			t.Fatalf("GET /providers/limits on node %d: shared_amazon_ses %v; want usage %d (all nodes), at its limit", i+1, shared, used)
		}
	}
	// The request for a higher limit sees the same usage (at the limit,
	// past the 80% from which one may be filed), on any node.
	req := mustAs(t, nodes[2], root, 201, "POST", "/providers/shared-amazon-ses-limit-request", map[string]any{"reason": "cluster"})
	if snap, _ := req["limit"].(map[string]any); snap == nil || snap["usage"] != float64(used) {
		t.Fatalf("limit request: %v; want its snapshot at usage %d", req, used)
	}
}
