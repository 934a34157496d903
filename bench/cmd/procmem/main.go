// Command procmem samples the memory of a process tree until it is stopped
// (SIGTERM/SIGINT) or the root process exits, then prints one JSON line:
//
//	{"peak_rss_mb":…,"peak_pss_mb":…,"peak_procs":…,"cpu_s":…,"samples":…}
//
// peak_rss_mb is the highest sum of VmRSS over the root process and all its
// descendants (for Postfix: master and every daemon it forked); shared pages
// (libraries, shared memory) count once per process, as `ps` would show.
// peak_pss_mb is the same with proportional set size, where each shared
// page is divided among the processes sharing it, so it does not overcount
// multi-process servers. cpu_s is the CPU time (user+system) the tree used
// between the first and the last sample, daemons that exited meanwhile
// included (their time is in their parent's cutime/cstime once reaped).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Result is the JSON line printed at the end.
type Result struct {
	PeakRSSMB float64 `json:"peak_rss_mb"`
	PeakPSSMB float64 `json:"peak_pss_mb"`
	PeakProcs int     `json:"peak_procs"`
	CPUs      float64 `json:"cpu_s"`
	Samples   int     `json:"samples"`
}

// proc is what procmem needs from /proc/PID/stat.
type proc struct {
	ppid string
	cpu  int64 // utime+stime+cutime+cstime, in clock ticks
}

// ticksPerSecond is USER_HZ, 100 on every Linux architecture Go supports.
const ticksPerSecond = 100

func main() {
	pid := flag.Int("pid", 0, "root process id")
	interval := flag.Duration("interval", 250*time.Millisecond, "sampling interval")
	flag.Parse()
	if *pid <= 0 {
		fmt.Fprintln(os.Stderr, "procmem: -pid required")
		os.Exit(2)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(*interval)
	defer tick.Stop()

	var (
		r          Result
		cpu0, cpu1 int64
	)
	sample := func() bool {
		pids, cpu := tree(*pid)
		if len(pids) == 0 {
			return false
		}
		var rss, pss int64
		for _, p := range pids {
			rss += field("/proc/"+p+"/status", "VmRSS:")
			pss += field("/proc/"+p+"/smaps_rollup", "Pss:")
		}
		if r.Samples == 0 {
			cpu0 = cpu
		}
		cpu1 = cpu
		r.Samples++
		r.PeakRSSMB = max(r.PeakRSSMB, float64(rss)/1024)
		r.PeakPSSMB = max(r.PeakPSSMB, float64(pss)/1024)
		r.PeakProcs = max(r.PeakProcs, len(pids))
		return true
	}
loop:
	for sample() {
		select {
		case <-stop:
			sample()
			break loop
		case <-tick.C:
		}
	}
	r.CPUs = float64(cpu1-cpu0) / ticksPerSecond
	json.NewEncoder(os.Stdout).Encode(r)
}

// tree returns root and all its live descendants, as /proc directory names,
// and their CPU time in clock ticks.
func tree(root int) ([]string, int64) {
	procs := map[string]proc{}
	children := map[string][]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime stime cutime cstime …; comm may
		// contain spaces and parentheses, so split after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 15 {
			continue
		}
		var cpu int64
		for _, x := range f[11:15] { // stat fields 14-17
			n, _ := strconv.ParseInt(string(x), 10, 64)
			cpu += n
		}
		pid := filepath.Base(d)
		procs[pid] = proc{ppid: string(f[1]), cpu: cpu}
		children[string(f[1])] = append(children[string(f[1])], pid)
	}
	r := strconv.Itoa(root)
	if _, ok := procs[r]; !ok {
		return nil, 0
	}
	out := []string{r}
	var cpu int64
	for i := 0; i < len(out); i++ {
		cpu += procs[out[i]].cpu
		out = append(out, children[out[i]]...)
	}
	return out, cpu
}

// field returns the kB value of the line starting with key in a /proc file,
// or 0.
func field(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("\n"+key))
	if i < 0 {
		if !bytes.HasPrefix(b, []byte(key)) {
			return 0
		}
		i = -1
	}
	f := bytes.Fields(b[i+1+len(key):])
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return n
}
