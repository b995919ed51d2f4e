// MinIO for Lifeline's immutable-repository tests (tests/agent/test_immutable.py): the upstream
// server (github.com/minio/minio, pinned in go.mod) built as it is, with nothing of ours added. It is
// the S3 server of the tests that enforces Object Lock: a locked version cannot be deleted, its
// COMPLIANCE retention cannot be shortened, and versioning cannot be suspended on a locked bucket
// (moto's server lets the last two through; docs/immutability.md says what each server checks).
package main

import (
	"os"

	minio "github.com/minio/minio/cmd"
)

func main() {
	minio.Main(os.Args)
}
