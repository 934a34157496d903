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
