package relay

import "testing"

func TestSuccessCode(t *testing.T) {
	for reply, want := range map[string]int{
		"250 2.0.0 Ok: queued as X":       250,
		"251 2.1.5 forwarded":             251,
		"250":                             250,
		"250-first line":                  250,
		"SES accepted MessageId=0100abc":  250,
		"2500 odd":                        250,
		"":                                250,
		"550 5.1.1 cannot be a success!":  250,
		"Graph accepted, request-id abc1": 250,
	} {
		if got := successCode(reply); got != want {
			t.Errorf("successCode(%q) = %d, want %d", reply, got, want)
		}
	}
}
