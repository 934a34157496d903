package relay

import "sync"

// dataMark is one attempt's durable "the body is about to go out" record
// (Envelope.MarkData), written at most once, possibly started ahead of the
// moment it must be durable (Envelope.PrepareData).
type dataMark struct {
	write   func() error
	once    sync.Once
	started bool // written only inside once
	done    chan struct{}
	err     error
}

func newDataMark(write func() error) *dataMark {
	return &dataMark{write: write, done: make(chan struct{})}
}

// start begins the write in the background; later calls do nothing.
func (d *dataMark) start() {
	d.once.Do(func() {
		d.started = true
		go func() {
			d.err = d.write()
			close(d.done)
		}()
	})
}

// wait starts the write if needed and returns its result.
func (d *dataMark) wait() error {
	d.start()
	<-d.done
	return d.err
}

// settle waits for a write that was started; it does nothing otherwise.
func (d *dataMark) settle() {
	d.once.Do(func() {}) // a write not started by now never will be
	if d.started {
		<-d.done
	}
}
