package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// ExecResult is the runtime's answer to /execute.
type ExecResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"` // as the runtime reports it: -N for death by signal N
}

// Execute runs command in the sandbox and returns its output and exit code.
// The python runtime splits command like a POSIX shell would (shlex) but
// runs it without one, in the sandbox root: pipes, redirections and
// variables need `sh -c '...'`. A command that cannot be started, or that
// times out in the runtime, is still a result (exit code 1, the reason in
// Stderr), not an error; errors are about the call itself.
//
// Execute makes a single attempt unless WithRetries is given: a command
// that reached the runtime before the connection failed must not run twice
// behind the caller's back.
func (c *Client) Execute(ctx context.Context, t Target, command string, opts ...CallOption) (ExecResult, error) {
	o := collectOptions(opts)
	ctx, cancel := o.withCallTimeout(ctx)
	defer cancel()
	op := "execute in sandbox " + t.String()
	payload, err := json.Marshal(map[string]string{"command": command})
	if err != nil {
		return ExecResult{}, fmt.Errorf("%s: encoding the command: %w", op, err)
	}
	var res ExecResult
	err = c.do(ctx, t, request{
		op:          op,
		method:      http.MethodPost,
		endpoint:    "execute",
		body:        payload,
		contentType: "application/json",
		attempts:    o.attempts(1),
	}, func(resp *http.Response, body io.Reader) error {
		var raw struct {
			Stdout   string `json:"stdout"`
			Stderr   string `json:"stderr"`
			ExitCode *int   `json:"exit_code"`
		}
		if err := decodeJSON(resp, body, &raw); err != nil {
			return err
		}
		if raw.ExitCode == nil {
			return fmt.Errorf("the response has no exit_code (Content-Type %q); is the router reaching the python runtime?", resp.Header.Get("Content-Type"))
		}
		res = ExecResult{Stdout: raw.Stdout, Stderr: raw.Stderr, ExitCode: *raw.ExitCode}
		return nil
	})
	if err != nil {
		return ExecResult{}, err
	}
	return res, nil
}

// decodeJSON reads the whole body (within the limit) and decodes it into v,
// keeping the reader's own errors (ErrResponseTooLarge, *bodyReadError)
// recognisable. Reading first, then decoding, is faster than a streaming
// json.Decoder for large outputs and lets a bad body be quoted.
func decodeJSON(resp *http.Response, body io.Reader, v any) error {
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := buf.ReadFrom(body); err != nil {
		return err
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("the response (Content-Type %q) is not the runtime's JSON: %w; it starts with: %s",
			resp.Header.Get("Content-Type"), err, excerpt(buf.String(), 200))
	}
	return nil
}
