package smtp

import (
	"context"
	"time"
)

// Test opens a fresh session — TCP, TLS, EHLO, AUTH — says QUIT without
// sending anything and returns how long the opening took. It bypasses the
// pool (an operator's test must not wait behind busy senders) and returns
// the same *relay.DeliveryError a Send would, so a bad password reads as
// class Auth.
func (p *Provider) Test(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	pc, err := p.dial(ctx)
	latency := time.Since(start)
	if err != nil {
		return latency, err
	}
	pc.unbind()
	pc.conn.setOp(time.Now().Add(quitTimeout))
	pc.client.Quit()
	pc.client.Close()
	return latency, nil
}

// Probe validates cfg and runs Test on it: what POST /providers/{id}/test
// does for a Custom SMTP provider.
func Probe(ctx context.Context, cfg Config) error {
	p, err := New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.Test(ctx)
	return err
}
