package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how patiently a call is retried. A call is
// retried when the router answers 502, 503 or 504, when the router cannot be
// reached (a transport error) and when the response breaks off mid-body;
// never on other statuses, on a cancelled context or on a response that is
// too large. The zero value is the default policy.
//
// Apart from those retries, any call, Execute included, is sent again
// after an attempt that never reached a runtime (see Client.WaitRouter):
// sending it again cannot run anything twice.
type RetryPolicy struct {
	// Attempts is the number of attempts, the first included, of the
	// idempotent calls: Upload, Download, List and Exists. 0 means 5; 1
	// disables retrying. Execute makes 1 attempt unless WithRetries says
	// otherwise.
	Attempts int

	// Backoff is the wait before the first retry; it doubles for each
	// further retry up to MaxBackoff. 0 means 100ms.
	Backoff time.Duration

	// MaxBackoff caps the wait between attempts. 0 means 2s.
	MaxBackoff time.Duration

	// Resends bounds how many attempts of a call that never reached a
	// runtime are sent again; they do not count against Attempts. 0 means
	// 5; negative disables resending.
	Resends int
}

const (
	defaultResends    = 5
	defaultAttempts   = 5
	defaultBackoff    = 100 * time.Millisecond
	defaultMaxBackoff = 2 * time.Second
)

func (p RetryPolicy) attempts() int {
	if p.Attempts <= 0 {
		return defaultAttempts
	}
	return p.Attempts
}

func (p RetryPolicy) resends() int {
	switch {
	case p.Resends < 0:
		return 0
	case p.Resends == 0:
		return defaultResends
	}
	return p.Resends
}

// wait is the pause before retry number n (1 for the first retry):
// Backoff·2^(n-1), capped at MaxBackoff, times a random factor in
// [0.75, 1.25) so that clients failing together do not retry together.
func (p RetryPolicy) wait(n int) time.Duration {
	d, limit := p.Backoff, p.MaxBackoff
	if d <= 0 {
		d = defaultBackoff
	}
	if limit <= 0 {
		limit = defaultMaxBackoff
	}
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2))
}

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	timeout    time.Duration
	retries    int
	retriesSet bool
}

// WithTimeout bounds the whole call, retries and waits included; when it
// expires the call fails with an error matching context.DeadlineExceeded
// that names the timeout. The default is no bound beyond ctx's own. A
// non-positive d is ignored.
func WithTimeout(d time.Duration) CallOption {
	return func(o *callOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithRetries allows n retries after the first attempt (at most n+1
// attempts), on the conditions RetryPolicy lists, with Client.Retry's
// waits. WithRetries(0) disables retrying. It overrides Client.Retry's
// Attempts, and is the only way to retry Execute, which by default makes a
// single attempt because running a command twice is not harmless.
func WithRetries(n int) CallOption {
	return func(o *callOptions) {
		o.retries = max(n, 0)
		o.retriesSet = true
	}
}

func collectOptions(opts []CallOption) callOptions {
	var o callOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// attempts resolves the number of attempts for a call whose default is def.
func (o callOptions) attempts(def int) int {
	if o.retriesSet {
		return o.retries + 1
	}
	return def
}

// callTimeoutError is the cause of a WithTimeout expiry.
type callTimeoutError struct{ d time.Duration }

func (e *callTimeoutError) Error() string {
	return fmt.Sprintf("call timeout of %s (WithTimeout) reached: %v", e.d, context.DeadlineExceeded)
}
func (e *callTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// withCallTimeout applies WithTimeout to ctx.
func (o callOptions) withCallTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, o.timeout, &callTimeoutError{o.timeout})
}
