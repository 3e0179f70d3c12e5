package main

// The `sql_insert` output, written after Redpanda Connect's component of the
// same name (internal/impl/sql/output_sql_insert.go and conn_fields.go there):
// the same config fields and defaults, the same statement builder
// (github.com/Masterminds/squirrel) and the same driver for `postgres`
// (github.com/lib/pq, which Redpanda Connect's public/components/sql imports),
// the same write: each batch becomes ONE multi-row
// `[prefix] INSERT INTO table (columns) VALUES ($1,...),(...),... [suffix]`
// executed through database/sql, up to `max_in_flight` batches at once.
//
// Only the `postgres` driver is compiled in (the only one the bench needs), and
// init_files is left out. One addition for the benchmark: on close the output
// logs how many rows it sent and how many the database reported as inserted,
// so re-deliveries absorbed by `ON CONFLICT DO NOTHING` can be counted.

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Masterminds/squirrel"
	_ "github.com/lib/pq" // registers the "postgres" database/sql driver

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func sqlInsertOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Inserts a row into an SQL database for each message; each batch is one multi-row INSERT (re-implementation of Redpanda Connect's sql_insert for the Nudge benchmark).").
		Field(service.NewStringEnumField("driver", "postgres").
			Description("The database driver. Only `postgres` (github.com/lib/pq, as in Redpanda Connect) is built into this peer.")).
		Field(service.NewStringField("dsn").
			Description("The data source name, e.g. `postgres://user:pass@host:5432/db?sslmode=disable` (lib/pq requires SSL unless `sslmode=disable`).").
			Example("postgres://foouser:foopass@localhost:5432/foodb?sslmode=disable")).
		Field(service.NewStringField("table").
			Description("The table to insert into.").
			Example("foo")).
		Field(service.NewStringListField("columns").
			Description("The columns to insert.").
			Example([]string{"foo", "bar", "baz"})).
		Field(service.NewBloblangField("args_mapping").
			Description("A Bloblang mapping that evaluates to an array of values, one per column.").
			Example("root = [ this.cat.meow, this.doc.woofs[0] ]").
			Example(`root = [ meta("user.id") ]`)).
		Field(service.NewStringField("prefix").
			Description("An optional prefix prepended to the insert query (before INSERT).").
			Optional().
			Advanced()).
		Field(service.NewStringField("suffix").
			Description("An optional suffix appended to the insert query.").
			Optional().
			Advanced().
			Example("ON CONFLICT (name) DO NOTHING")).
		Field(service.NewIntField("max_in_flight").
			Description("The maximum number of inserts (batches) to run in parallel.").
			Default(64)).
		Field(service.NewStringField("init_statement").
			Description("An optional SQL statement executed once, on the first connection, e.g. to create the table. It should be idempotent. A failure is logged as a warning and does not stop the output.").
			Optional().
			Advanced()).
		Field(service.NewDurationField("conn_max_idle_time").
			Description("An optional maximum amount of time a connection may be idle before it is closed.").
			Optional().
			Advanced()).
		Field(service.NewDurationField("conn_max_life_time").
			Description("An optional maximum amount of time a connection may be reused.").
			Optional().
			Advanced()).
		Field(service.NewIntField("conn_max_idle").
			Description("The maximum number of idle connections kept in the pool (database/sql). With max_in_flight above it, connections beyond it are closed after each use.").
			Default(2).
			Optional().
			Advanced()).
		Field(service.NewIntField("conn_max_open").
			Description("An optional maximum number of open connections (0 or less: unlimited).").
			Optional().
			Advanced()).
		Field(service.NewBatchPolicyField("batching"))
}

func init() {
	err := service.RegisterBatchOutput("sql_insert", sqlInsertOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (out service.BatchOutput, pol service.BatchPolicy, maxInFlight int, err error) {
			if pol, err = conf.FieldBatchPolicy("batching"); err != nil {
				return
			}
			if maxInFlight, err = conf.FieldInt("max_in_flight"); err != nil {
				return
			}
			out, err = newSQLInsertOutput(conf, mgr)
			return
		})
	if err != nil {
		panic(err)
	}
}

//------------------------------------------------------------------------------

type sqlInsertOutput struct {
	driver      string
	dsn         string
	builder     squirrel.InsertBuilder
	argsMapping *bloblang.Executor

	initStatement   string
	connMaxIdleTime time.Duration
	connMaxLifetime time.Duration
	maxIdle         int
	maxOpen         int

	log *service.Logger

	mu sync.RWMutex
	db *sql.DB

	rowsSent     atomic.Int64 // rows in batches written successfully
	rowsInserted atomic.Int64 // rows the database reported as inserted
	batches      atomic.Int64
}

func newSQLInsertOutput(conf *service.ParsedConfig, mgr *service.Resources) (*sqlInsertOutput, error) {
	s := &sqlInsertOutput{log: mgr.Logger()}
	var err error
	if s.driver, err = conf.FieldString("driver"); err != nil {
		return nil, err
	}
	if s.dsn, err = conf.FieldString("dsn"); err != nil {
		return nil, err
	}
	table, err := conf.FieldString("table")
	if err != nil {
		return nil, err
	}
	columns, err := conf.FieldStringList("columns")
	if err != nil {
		return nil, err
	}
	if s.argsMapping, err = conf.FieldBloblang("args_mapping"); err != nil {
		return nil, err
	}
	s.builder = squirrel.Insert(table).Columns(columns...).PlaceholderFormat(squirrel.Dollar)
	if conf.Contains("prefix") {
		v, err := conf.FieldString("prefix")
		if err != nil {
			return nil, err
		}
		s.builder = s.builder.Prefix(v)
	}
	if conf.Contains("suffix") {
		v, err := conf.FieldString("suffix")
		if err != nil {
			return nil, err
		}
		s.builder = s.builder.Suffix(v)
	}
	if conf.Contains("init_statement") {
		if s.initStatement, err = conf.FieldString("init_statement"); err != nil {
			return nil, err
		}
	}
	if conf.Contains("conn_max_idle_time") {
		if s.connMaxIdleTime, err = conf.FieldDuration("conn_max_idle_time"); err != nil {
			return nil, err
		}
	}
	if conf.Contains("conn_max_life_time") {
		if s.connMaxLifetime, err = conf.FieldDuration("conn_max_life_time"); err != nil {
			return nil, err
		}
	}
	if conf.Contains("conn_max_idle") {
		if s.maxIdle, err = conf.FieldInt("conn_max_idle"); err != nil {
			return nil, err
		}
	}
	if conf.Contains("conn_max_open") {
		if s.maxOpen, err = conf.FieldInt("conn_max_open"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *sqlInsertOutput) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	db, err := sql.Open(s.driver, s.dsn)
	if err != nil {
		return err
	}
	db.SetConnMaxIdleTime(s.connMaxIdleTime)
	db.SetConnMaxLifetime(s.connMaxLifetime)
	db.SetMaxIdleConns(s.maxIdle)
	db.SetMaxOpenConns(s.maxOpen)
	if s.initStatement != "" {
		if _, err := db.ExecContext(ctx, s.initStatement); err != nil {
			s.log.Warnf("Failed to execute init_statement: %v", err)
		} else {
			s.log.Debug("Successfully ran init_statement")
		}
		s.initStatement = "" // once, like Redpanda Connect's sync.Once
	}
	s.db = db
	return nil
}

// WriteBatch inserts the whole batch with one multi-row INSERT.
func (s *sqlInsertOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return service.ErrNotConnected
	}
	b := s.builder
	for i := range batch {
		res, err := batch.BloblangQuery(i, s.argsMapping)
		if err != nil {
			return err
		}
		v, err := res.AsStructured()
		if err != nil {
			return err
		}
		args, ok := v.([]any)
		if !ok {
			return fmt.Errorf("mapping returned non-array result: %T", v)
		}
		b = b.Values(args...)
	}
	r, err := b.RunWith(s.db).ExecContext(ctx)
	if err != nil {
		return err
	}
	s.batches.Add(1)
	s.rowsSent.Add(int64(len(batch)))
	if n, err := r.RowsAffected(); err == nil {
		s.rowsInserted.Add(n)
	}
	return nil
}

func (s *sqlInsertOutput) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent, inserted := s.rowsSent.Load(), s.rowsInserted.Load()
	s.log.Infof("sql_insert wrote %d batches: %d rows sent, %d inserted, %d already present (re-delivered)",
		s.batches.Load(), sent, inserted, sent-inserted)
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}
