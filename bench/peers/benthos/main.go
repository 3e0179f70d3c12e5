// Command benthos-peer is the Redpanda Connect peer of Nudge's Kafka→Postgres
// drain: the Benthos v4 stream engine (github.com/redpanda-data/benthos/v4,
// the engine Redpanda Connect is built on) with two components re-implemented
// after Redpanda Connect's of the same names: the `kafka_franz` input
// (input_kafka_franz.go) and the `sql_insert` output (output_sql_insert.go).
//
// Redpanda Connect itself (github.com/redpanda-data/connect/v4) cannot be
// fetched on this machine, see README.md.
//
// The CLI is Benthos's own: `benthos-peer -c config.yaml`, `benthos-peer run
// config.yaml`, `benthos-peer lint config.yaml`, `benthos-peer list`, ...
package main

import (
	"context"

	// Benthos's own component bundles: `pure` holds the Bloblang function and
	// method library (ts_format, bytes, ...), processors, brokers and the
	// `none`/`logger` metrics; `io` holds stdin/stdout, files, http_server.
	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background(),
		service.CLIOptSetVersion("4.60.0-nudge-peer", "n/a"))
}
