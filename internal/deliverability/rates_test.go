package deliverability

import "testing"

func TestJudge(t *testing.T) {
	cases := []struct {
		c    Counts
		want Level
	}{
		{Counts{Delivered: 3, Bounces: 1}, InsufficientVolume},
		{Counts{Delivered: 99, Bounces: 50}, InsufficientVolume},
		{Counts{Delivered: 0}, InsufficientVolume},
		{Counts{Delivered: 1000, Bounces: 49}, OK},
		{Counts{Delivered: 1000, Bounces: 50}, Warning},
		{Counts{Delivered: 1000, Bounces: 100}, AtRisk},
		{Counts{Delivered: 1000, Complaints: 1}, Warning},
		{Counts{Delivered: 1000, Complaints: 5}, AtRisk},
		{Counts{Delivered: 10000, Complaints: 9}, OK},
	}
	for _, c := range cases {
		if got := Judge(c.c, Defaults); got.Level != c.want {
			t.Errorf("Judge(%+v) = %+v, want %s", c.c, got, c.want)
		}
	}
	if r := Judge(Counts{Delivered: 200, Bounces: 20, Complaints: 1}, Defaults); r.BounceRate != 0.1 || r.ComplaintRate != 0.005 {
		t.Errorf("rates %+v", r)
	}
	if Worst(OK, AtRisk) != AtRisk || Worst(Warning, InsufficientVolume) != Warning {
		t.Error("Worst")
	}
}
