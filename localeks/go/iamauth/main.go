// Command eks-token-verifier runs aws-iam-authenticator's own token verifier
// (sigs.k8s.io/aws-iam-authenticator/pkg/token at the version go.mod pins) for the local EKS's
// token webhook (localeks/webhook.py), so that a token is judged by that code, not by a port of it.
//
// The verifier does every check of the token itself (size, prefix, base64, URL, STS host for the
// partition, path, query parameters, X-Amz-Expires, X-Amz-Date) and then sends the presigned
// GetCallerIdentity request to STS. Here that request does not leave the machine: this program
// hands it to its caller, which plays STS (the webhook verifies the SigV4 signature with the
// secret key moto issued and asks moto for the caller), and gives the verifier the caller's
// answer. The verifier then reads that answer as it reads STS's, into its Identity.
//
// One token per run, one JSON object per line:
//
//	stdin:  {"token": "k8s-aws-v1...."}
//	stdout: {"sts": {"method": "GET", "url": "https://sts...", "header": {"X-K8s-Aws-Id": ["..."]}}}
//	        (only when the token passed every check before STS)
//	stdin:  {"status": 200, "body": "{\"GetCallerIdentityResponse\": ...}"} or {"error": "..."}
//	stdout: {"identity": {...}} or {"error": "...", "kind": "format"|"sts"|"throttling"|"other"}
//
// The exit status is 0 whenever a verdict was written.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"sigs.k8s.io/aws-iam-authenticator/pkg/token"
)

type stsRequest struct {
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header http.Header `json:"header"`
}

type stsAnswer struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
	Error  string `json:"error"`
}

type verdict struct {
	Identity *token.Identity `json:"identity,omitempty"`
	Error    string          `json:"error,omitempty"`
	Kind     string          `json:"kind,omitempty"`
}

// relay stands in for the network: the verifier's http.Client has no Transport of its own
// (token.go NewVerifier), so it uses http.DefaultTransport, which main replaces with this.
type relay struct {
	in  *bufio.Reader
	out *json.Encoder
}

func (r relay) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := r.out.Encode(map[string]stsRequest{"sts": {req.Method, req.URL.String(), req.Header}}); err != nil {
		return nil, err
	}
	line, err := r.in.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return nil, fmt.Errorf("no answer from the local STS: %w", err)
	}
	var answer stsAnswer
	if err := json.Unmarshal(line, &answer); err != nil {
		return nil, fmt.Errorf("unreadable answer from the local STS: %w", err)
	}
	if answer.Error != "" {
		return nil, errors.New(answer.Error)
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", answer.Status, http.StatusText(answer.Status)),
		StatusCode: answer.Status,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(answer.Body)),
		Request:    req,
	}, nil
}

func kind(err error) string {
	var format token.FormatError
	var sts token.STSError
	var throttling token.STSThrottling
	switch {
	case errors.As(err, &format):
		return "format"
	case errors.As(err, &sts):
		return "sts"
	case errors.As(err, &throttling):
		return "throttling"
	}
	return "other"
}

func main() {
	clusterID := flag.String("cluster-id", "", "the cluster's ID, the value STS must see in x-k8s-aws-id")
	partition := flag.String("partition", "aws", "the verifier's partition (aws, aws-cn, aws-us-gov, ...)")
	region := flag.String("region", "", "the verifier's region (used for hosts the SDK does not know)")
	flag.Parse()
	if *clusterID == "" {
		fmt.Fprintln(os.Stderr, "eks-token-verifier: -cluster-id is required")
		os.Exit(2)
	}

	in := bufio.NewReaderSize(os.Stdin, 64*1024)
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	http.DefaultTransport = relay{in: in, out: out}

	line, err := in.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		fmt.Fprintln(os.Stderr, "eks-token-verifier: no token on stdin:", err)
		os.Exit(2)
	}
	var request struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(line, &request); err != nil {
		fmt.Fprintln(os.Stderr, "eks-token-verifier: stdin is not {\"token\": ...}:", err)
		os.Exit(2)
	}

	identity, err := token.NewVerifier(*clusterID, *partition, *region).Verify(request.Token)
	result := verdict{Identity: identity}
	if err != nil {
		result = verdict{Error: err.Error(), Kind: kind(err)}
	}
	if err := out.Encode(result); err != nil {
		os.Exit(1)
	}
}
