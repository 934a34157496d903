package dashboard

import (
	"net/http"
	"net/url"
)

// node is one row of GET /operator/nodes, with the state the page shows.
type node struct {
	NodeID       string `json:"node_id"`
	AdvertiseURL string `json:"advertise_url"`
	Version      string `json:"version"`
	StartedAt    string `json:"started_at"`
	Self         bool   `json:"self"`
	State        string `json:"-"`
}

type nodesData struct {
	Nodes []node
	Error string
}

// readyAnswer is the part of /readyz the Nodes page uses: this node's
// standing in the cluster ("member", or "degraded" while etcd cannot be
// reached); absent in single-node mode.
type readyAnswer struct {
	Cluster *struct {
		State string `json:"state"`
	} `json:"cluster"`
}

// operatorNodes is the operator's Nodes page: GET /operator/nodes (every
// registered node, or this daemon alone in single-node mode). A node is
// listed only while its registration is live, so every other node reads
// "live"; this node's own state is /readyz's, the one thing the API says
// about how a node stands.
func (d *Dashboard) operatorNodes(w http.ResponseWriter, r *http.Request, s *session) {
	var data nodesData
	a, err := d.get(r, s, "/operator/nodes", url.Values{}, &data.Nodes)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		data.Error = err.Error()
	}
	self := "not ready"
	var ready readyAnswer
	if ra := d.callPath(r, s, http.MethodGet, "/readyz", nil, nil); ra.into(&ready) == nil {
		self = "single node"
		if ready.Cluster != nil {
			self = ready.Cluster.State
		}
	}
	for i := range data.Nodes {
		data.Nodes[i].State = "live"
		if data.Nodes[i].Self {
			data.Nodes[i].State = self
		}
	}
	d.render(w, r, http.StatusOK, "nodes", s, page{Title: "Nodes", Nav: "nodes", Data: data})
}
