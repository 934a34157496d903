package main

import (
	"slices"
	"time"
)

// Window is one -interval slice of a run: the messages whose 250 arrived
// in [StartS, StartS+interval) after the clock started. It shows how
// acceptance changes during a long run, e.g. once the history mover starts
// a minute in (bench/mover.sh).
type Window struct {
	StartS       float64 `json:"start_s"`
	Accepted     int     `json:"accepted"`
	AcceptedPerS float64 `json:"accepted_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
}

// splitWindows groups each session's latencies by the window its 250 came
// in (ends[w][i] is when lats[w][i]'s reply arrived). The last window is
// usually partial: its rate is over its own length up to the last reply.
func splitWindows(interval time.Duration, lats, ends [][]time.Duration) []Window {
	var byWin [][]time.Duration
	var last time.Duration
	for w := range lats {
		for i, d := range lats[w] {
			at := ends[w][i]
			last = max(last, at)
			k := int(at / interval)
			for len(byWin) <= k {
				byWin = append(byWin, nil)
			}
			byWin[k] = append(byWin[k], d)
		}
	}
	out := make([]Window, 0, len(byWin))
	for k, ds := range byWin {
		span := interval
		if k == len(byWin)-1 {
			span = last - time.Duration(k)*interval
		}
		win := Window{StartS: (time.Duration(k) * interval).Seconds(), Accepted: len(ds)}
		if span > 0 {
			win.AcceptedPerS = float64(len(ds)) / span.Seconds()
		}
		if len(ds) > 0 {
			slices.Sort(ds)
			win.P50ms = ms(ds[len(ds)*50/100])
			win.P99ms = ms(ds[min(len(ds)*99/100, len(ds)-1)])
		}
		out = append(out, win)
	}
	return out
}
