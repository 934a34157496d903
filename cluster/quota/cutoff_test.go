package quota

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/routing"
)

// cutOffCluster is three quota nodes on a 3-member etcd; the third
// reaches etcd only through a proxy the test can cut, so it can lose etcd
// while the other two keep it.
func cutOffCluster(t *testing.T, clk *clock) (*etcdtest.Cluster, *etcdtest.Proxy, []*Cluster) {
	t.Helper()
	ec := etcdtest.Start(t, 3)
	px := etcdtest.NewProxy(t, strings.TrimPrefix(ec.Endpoints()[0], "http://"))
	qs := []*Cluster{
		newNode(t, ec.Endpoints(), "node1", clk),
		newNode(t, ec.Endpoints(), "node2", clk),
		newNode(t, []string{px.Endpoint()}, "node3", clk),
	}
	startNodes(t, qs)
	return ec, px, qs
}

// warmUp sends rounds messages through each node in turn, so that every
// node holds grants (and the windows have totals) before the test's event.
func warmUp(t *testing.T, qs []*Cluster, clk *clock, l routing.Limits, rounds int) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		for _, q := range qs {
			send(t, q, clk, "p", l)
		}
	}
}

// waitAsked waits until q has asked its peers twice more from now: the
// second ask began after this call, so it saw the cluster as it is now.
func waitAsked(t *testing.T, q *Cluster) {
	t.Helper()
	q.mu.Lock()
	from := q.asked
	q.mu.Unlock()
	asked := eventually(20*time.Second, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.asked >= from+2
	})
	if !asked {
		t.Fatalf("node %s did not ask its peers within 20 s", q.node)
	}
}

// drain takes from q until it is refused, and returns how many it took.
func drain(t *testing.T, q *Cluster, clk *clock, l routing.Limits) int {
	t.Helper()
	n := 0
	for {
		ok, _, err := takeNoWait(q, clk, "p", l)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return n
		}
		n++
	}
}

// waitDown waits until q's etcd calls fail (its membership read, every
// two seconds, finds out).
func waitDown(t *testing.T, q *Cluster, down bool) {
	t.Helper()
	if !eventually(20*time.Second, func() bool { return q.Down() == down }) {
		t.Fatalf("node %s: Down() is not %v within 20 s", q.node, down)
	}
}

// TestNodeCutOffAlone: the third node loses etcd while the other two keep
// it, and they take all they can of a fresh minute (node 3's part of a
// split stays unspent until its registration lapses). The cut-off
// node asks them, hears that they reach etcd, and spends only what it
// holds — nothing of a window it never had a grant in — so the minute
// holds at most its cap. (Before: it spent cap/3 of its own on top.)
func TestNodeCutOffAlone(t *testing.T) {
	clk := newClock()
	_, px, qs := cutOffCluster(t, clk)
	l := limits(0, 90)
	warmUp(t, qs, clk, l, 5)
	px.Cut()
	waitDown(t, qs[2], true)
	minute := clk.Now().Truncate(time.Minute).Add(time.Minute)
	clk.advanceTo(minute)
	total := drain(t, qs[0], clk, l) + drain(t, qs[1], clk, l)
	// The cut-off node has had time to ask the others (its loop asks
	// every second while etcd is away).
	waitAsked(t, qs[2])
	third := drain(t, qs[2], clk, l)
	if total+third > 90 {
		t.Fatalf("minute cap 90: nodes 1 and 2 took %d and the cut-off node %d more", total, third)
	}
	if total == 0 {
		t.Error("nodes 1 and 2 took nothing of a fresh minute")
	}
	if qs[2].Stats().OutageUnits != 0 {
		t.Errorf("the cut-off node spent %d units past its grants", qs[2].Stats().OutageUnits)
	}
}

// TestLateReconnectAfterOutage: all of etcd stops; every node spends its
// grants and, on the others' word that etcd is away for them too, its
// outage share. etcd comes back, but the third node's way to it stays
// cut. In the next minute the two reconnected nodes fill the window while
// the late one, told that they are back, spends nothing more: the minute
// holds at most its cap. (Before: 115 of 90 seen in TestEtcdOutage.)
func TestLateReconnectAfterOutage(t *testing.T) {
	clk := newClock()
	ec, px, qs := cutOffCluster(t, clk)
	l := limits(0, 90)
	warmUp(t, qs, clk, l, 5)
	waitQuiet(t, qs)
	ec.StopAll()
	px.Cut()
	for _, q := range qs {
		waitDown(t, q, true)
	}
	// In the outage the share is spent once every node vouches.
	outage := clk.Now().Truncate(time.Minute).Add(time.Minute)
	clk.advanceTo(outage)
	waitVouched(t, qs[2], clk)
	if n := drain(t, qs[2], clk, l); n == 0 || n > 30 {
		t.Fatalf("node 3 took %d in a minute with etcd down for all, want its share (1..30)", n)
	}
	ec.StartAll()
	waitDown(t, qs[0], false)
	waitDown(t, qs[1], false)
	next := outage.Add(time.Minute)
	clk.advanceTo(next)
	total := drain(t, qs[0], clk, l) + drain(t, qs[1], clk, l)
	waitAsked(t, qs[2])
	third := drain(t, qs[2], clk, l)
	if total+third > 90 {
		t.Fatalf("minute cap 90 after the outage: nodes 1 and 2 took %d and the late node %d more", total, third)
	}
	if !qs[2].Down() {
		t.Fatal("node 3 reached etcd through a cut proxy")
	}
}

// TestVouchedShareStaysOutUntilSettled: in a full outage the third node
// spends its share of a minute on the others' word. etcd comes back for
// the first two but not yet for the third: for the rest of that minute
// they keep its share out of what they grant (its units are real mail
// that etcd has not heard of), until it reconnects, writes its outage
// units and its back marker; then the reserve is dropped.
func TestVouchedShareStaysOutUntilSettled(t *testing.T) {
	clk := newClock()
	ec, px, qs := cutOffCluster(t, clk)
	l := limits(0, 90)
	warmUp(t, qs, clk, l, 5)
	waitQuiet(t, qs)
	ec.StopAll()
	px.Cut()
	for _, q := range qs {
		waitDown(t, q, true)
	}
	minute := clk.Now().Truncate(time.Minute).Add(time.Minute)
	clk.advanceTo(minute)
	waitVouched(t, qs[2], clk)
	third := drain(t, qs[2], clk, l)
	if third == 0 {
		t.Fatal("node 3 spent nothing on the others' word")
	}
	ec.StartAll()
	waitDown(t, qs[0], false)
	waitDown(t, qs[1], false)
	clk.advanceTo(minute.Add(10 * time.Second)) // node 3's word has run out; the minute has not
	total := drain(t, qs[0], clk, l) + drain(t, qs[1], clk, l)
	if total+third > 90 {
		t.Fatalf("minute cap 90: node 3 spent %d on the others' word, and they then took %d", third, total)
	}
	px.Heal()
	waitDown(t, qs[2], false)
	waitSettled(t, qs[0]) // node 1 no longer keeps node 3's share out
	more := drain(t, qs[0], clk, l) + drain(t, qs[1], clk, l)
	if total+third+more > 90 {
		t.Fatalf("minute cap 90: %d + %d, then %d more after node 3 settled", third, total, more)
	}
}

// TestOutageShareCountsOthersGrants: only the first node sends through
// the provider before etcd stops; the other two never asked for its
// window. In the outage their shares still count what the first was
// granted (they follow every window's total through the watch), so the
// minute holds at most its cap. (Before: each took cap/3 as if nothing
// had been granted.)
func TestOutageShareCountsOthersGrants(t *testing.T) {
	clk := newClock()
	ec, qs := nodes(t, 3, clk)
	l := limits(0, 9000) // large against the rate: the first node takes a plain block, not a split that would give the others entries of their own
	clk.advanceTo(clk.Now().Truncate(time.Minute).Add(time.Minute))
	// 45 of one minute through the first node (send may move the clock
	// on while it waits: count what lands in the minute it ends in).
	var times []time.Time
	for perMinute(times)[clk.Now().Truncate(time.Minute).Unix()] < 45 {
		times = append(times, send(t, qs[0], clk, "p", l))
	}
	minute := clk.Now().Truncate(time.Minute)
	before := perMinute(times)[minute.Unix()]
	// The others' watches have the first node's grants.
	key := qs[0].windowKey(wkey{provName("p"), routing.Minute, minute.Unix()})
	for _, q := range qs[1:] {
		var got, want int
		seen := eventually(10*time.Second, func() bool {
			qs[0].mu.Lock()
			want = qs[0].seen[key]
			qs[0].mu.Unlock()
			q.mu.Lock()
			got = q.seen[key]
			q.mu.Unlock()
			return got >= want && got > 0
		})
		if !seen {
			t.Fatalf("node %s sees %d granted of the window, node 1 %d", q.node, got, want)
		}
	}
	waitQuiet(t, qs)
	ec.StopAll()
	for _, q := range qs {
		waitVouched(t, q, clk)
	}
	if !clk.Now().Truncate(time.Minute).Equal(minute) {
		t.Fatal("the clock left the minute")
	}
	total := before
	for _, q := range qs {
		total += drain(t, q, clk, l)
	}
	if total > 9000 {
		t.Fatalf("minute cap 9000: %d sent with etcd down, after node 1 alone had been granted blocks", total)
	}
}

// TestStaleViewIsNotVouched: the third node is cut off alone before a
// minute begins, and the other two take that minute's units; then etcd
// stops for them too. They now say etcd is away for them as well, but
// their word names grants the third node never heard of: it does not
// spend a share computed from its older view.
func TestStaleViewIsNotVouched(t *testing.T) {
	clk := newClock()
	ec, px, qs := cutOffCluster(t, clk)
	l := limits(0, 90)
	warmUp(t, qs, clk, l, 5)
	px.Cut()
	waitDown(t, qs[2], true)
	minute := clk.Now().Truncate(time.Minute).Add(time.Minute)
	clk.advanceTo(minute)
	total := 0
	for i := 0; i < 25; i++ {
		for _, q := range qs[:2] {
			send(t, q, clk, "p", l)
			total++
		}
	}
	ec.StopAll()
	waitDown(t, qs[0], true)
	waitDown(t, qs[1], true)
	waitAsked(t, qs[2])
	for _, q := range qs {
		total += drain(t, q, clk, l)
	}
	if total > 90 {
		t.Fatalf("minute cap 90: %d sent, the cut-off node spending on a view older than the others' grants", total)
	}
}

// TestAskerDividesByVouchersCount: the third node counts three live nodes
// while the others count four (one joined just before etcd went away and
// the third had not re-read the registrations). Each voucher keeps
// ceil(cap/4) of the third node's out of its grants afterwards, so the
// third divides its share by four too, not by the three it knows of.
func TestAskerDividesByVouchersCount(t *testing.T) {
	clk := newClock()
	ec := etcdtest.Start(t, 3)
	px := etcdtest.NewProxy(t, strings.TrimPrefix(ec.Endpoints()[0], "http://"))
	known := []string{"node1", "node2", "node3"}
	qs := []*Cluster{
		newNode(t, ec.Endpoints(), "node1", clk),
		newNode(t, ec.Endpoints(), "node2", clk),
		newNode(t, []string{px.Endpoint()}, "node3", clk, WithMembers(func() []string { return known })),
		newNode(t, ec.Endpoints(), "node4", clk),
	}
	for _, q := range qs {
		q.peersDown = askInProcess(qs, q.node)
	}
	for _, q := range qs {
		q.Start(context.Background())
		t.Cleanup(q.Close)
	}
	l := limits(0, 90)
	warmUp(t, qs, clk, l, 3)
	waitQuiet(t, qs)
	ec.StopAll()
	px.Cut()
	takeNoWait(qs[2], clk, "p", l) // its refill fails: it learns etcd is away (it reads no registrations)
	for _, q := range qs {
		waitDown(t, q, true)
	}
	minute := clk.Now().Truncate(time.Minute).Add(time.Minute)
	clk.advanceTo(minute)
	waitVouched(t, qs[2], clk)
	third := drain(t, qs[2], clk, l)
	ec.StartAll()
	for _, i := range []int{0, 1, 3} {
		waitDown(t, qs[i], false)
	}
	clk.advanceTo(minute.Add(10 * time.Second))
	total := 0
	for _, i := range []int{0, 1, 3} {
		total += drain(t, qs[i], clk, l)
	}
	// What each voucher keeps out for it afterwards is ceil(90/4): more
	// would be spent on top of the others' grants.
	if third > (90+3)/4 {
		t.Fatalf("node 3 spent %d on the word of nodes that keep ceil(90/4) = 23 out for it", third)
	}
	if total+third > 90 {
		t.Fatalf("minute cap 90: the node that knew of three spent %d on the word of nodes that counted four, and they then took %d", third, total)
	}
}
