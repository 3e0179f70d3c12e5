package main

// The `kafka_franz` input, written after Redpanda Connect's component of the
// same name (internal/impl/kafka/input_kafka_franz.go there): the same config
// fields and defaults, the same client library (github.com/twmb/franz-go), the
// same delivery model:
//
//   - records are batched per topic partition by the `batching` policy;
//   - each batch is handed to the pipeline and tracked by a per-partition
//     checkpointer; when the output has written a batch (Benthos acks it) the
//     checkpointer releases the highest offset below which every batch of the
//     partition is acked, and that record is marked for commit;
//   - marked offsets are committed every `commit_period` (kgo.AutoCommitMarks)
//     and when partitions are revoked (rebalance, shutdown);
//   - a partition whose unacknowledged messages reach `checkpoint_limit` is
//     paused until acks bring it back under the limit.
//
// So delivery is at-least-once: a crash or a stop re-delivers whatever was
// written but not yet committed. Omitted from the original: TLS, SASL,
// explicit `topic:partition` lists and regexp topics (not needed by the bench).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func kafkaFranzInputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("A Kafka input using the franz-go client library (re-implementation of Redpanda Connect's kafka_franz for the Nudge benchmark).").
		Description(`
Partitions of the listed topics are balanced across the members of `+"`consumer_group`"+`. Offsets are committed only for batches the output has acknowledged (at-least-once).

Metadata added to each message: kafka_key, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp_unix, kafka_tombstone_message, and every record header.`).
		Fields(
			service.NewStringListField("seed_brokers").
				Description("Broker addresses to bootstrap from. An item containing commas is split into several addresses.").
				Example([]string{"localhost:9092"}),
			service.NewStringListField("topics").
				Description("Topics to consume. An item containing commas is split into several topics.").
				Example([]string{"foo", "bar"}),
			service.NewStringField("consumer_group").
				Description("The consumer group to join. Partitions are balanced across its members and their offsets are committed and resumed under this name.").
				Optional(),
			service.NewStringField("client_id").
				Description("An identifier for the client connection.").
				Default("benthos").
				Advanced(),
			service.NewStringField("rack_id").
				Description("A rack identifier for this client.").
				Default("").
				Advanced(),
			service.NewIntField("checkpoint_limit").
				Description("How many messages of one partition may be in flight (handed to the pipeline, not yet acknowledged) before fetching that partition pauses. An offset is committed only once every message before it was delivered.").
				Default(1024).
				Advanced(),
			service.NewAutoRetryNacksToggleField(),
			service.NewDurationField("commit_period").
				Description("The period between commits of the acknowledged partition offsets. Offsets are also committed on shutdown and rebalance.").
				Default("5s").
				Advanced(),
			service.NewDurationField("session_timeout").
				Description("How long a group member may go without heartbeats before the broker evicts it.").
				Default("45s").
				Advanced(),
			service.NewDurationField("heartbeat_period").
				Description("How often a group member heartbeats.").
				Default("3s").
				Advanced(),
			service.NewDurationField("rebalance_timeout").
				Description("How long members may take to finish work and commit when a rebalance begins.").
				Default("60s").
				Advanced(),
			service.NewBoolField("start_from_oldest").
				Description("Start from the oldest available offset when the group has no committed offset (otherwise from the newest).").
				Default(true).
				Advanced(),
			service.NewBoolField("multi_header").
				Description("Decode headers into lists so that repeated keys keep every value.").
				Default(false).
				Advanced(),
			service.NewBatchPolicyField("batching").
				Description("A batching policy applied to each topic partition separately, so batches keep the partition's order.").
				Advanced(),
			service.NewDurationField("metadata_max_age").
				Description("The maximum age of metadata before it is refreshed.").
				Default("5m").
				Advanced(),
		)
}

func init() {
	err := service.RegisterBatchInput("kafka_franz", kafkaFranzInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			r, err := newFranzReader(conf, mgr)
			if err != nil {
				return nil, err
			}
			return service.AutoRetryNacksBatchedToggled(conf, r)
		})
	if err != nil {
		panic(err)
	}
}

//------------------------------------------------------------------------------

// ackedBatch is what the fetch loop hands to ReadBatch: a batch and what to do
// once the output acknowledged it.
type ackedBatch struct {
	batch service.MessageBatch
	onAck func()
}

type franzReader struct {
	brokers          []string
	topics           []string
	group            string
	clientID         string
	rackID           string
	checkpointLimit  int
	commitPeriod     time.Duration
	sessionTimeout   time.Duration
	heartbeatPeriod  time.Duration
	rebalanceTimeout time.Duration
	startFromOldest  bool
	multiHeader      bool
	batchPolicy      service.BatchPolicy
	metadataMaxAge   time.Duration

	res *service.Resources
	log *service.Logger

	mu      sync.Mutex
	batches chan ackedBatch // nil while disconnected
	closing bool
	stopped chan struct{} // closed when the fetch loop has finished
	cancel  context.CancelFunc
}

func splitList(items []string) []string {
	var out []string
	for _, it := range items {
		for _, s := range strings.Split(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func newFranzReader(conf *service.ParsedConfig, res *service.Resources) (*franzReader, error) {
	r := &franzReader{res: res, log: res.Logger()}
	var err error
	var list []string
	if list, err = conf.FieldStringList("seed_brokers"); err != nil {
		return nil, err
	}
	if r.brokers = splitList(list); len(r.brokers) == 0 {
		return nil, errors.New("seed_brokers must name at least one broker")
	}
	if list, err = conf.FieldStringList("topics"); err != nil {
		return nil, err
	}
	if r.topics = splitList(list); len(r.topics) == 0 {
		return nil, errors.New("topics must name at least one topic")
	}
	if conf.Contains("consumer_group") {
		if r.group, err = conf.FieldString("consumer_group"); err != nil {
			return nil, err
		}
	}
	if r.clientID, err = conf.FieldString("client_id"); err != nil {
		return nil, err
	}
	if r.rackID, err = conf.FieldString("rack_id"); err != nil {
		return nil, err
	}
	if r.checkpointLimit, err = conf.FieldInt("checkpoint_limit"); err != nil {
		return nil, err
	}
	if r.checkpointLimit < 1 {
		return nil, fmt.Errorf("checkpoint_limit must be at least 1, got %d", r.checkpointLimit)
	}
	if r.commitPeriod, err = conf.FieldDuration("commit_period"); err != nil {
		return nil, err
	}
	if r.sessionTimeout, err = conf.FieldDuration("session_timeout"); err != nil {
		return nil, err
	}
	if r.heartbeatPeriod, err = conf.FieldDuration("heartbeat_period"); err != nil {
		return nil, err
	}
	if r.rebalanceTimeout, err = conf.FieldDuration("rebalance_timeout"); err != nil {
		return nil, err
	}
	if r.startFromOldest, err = conf.FieldBool("start_from_oldest"); err != nil {
		return nil, err
	}
	if r.multiHeader, err = conf.FieldBool("multi_header"); err != nil {
		return nil, err
	}
	if r.batchPolicy, err = conf.FieldBatchPolicy("batching"); err != nil {
		return nil, err
	}
	if r.metadataMaxAge, err = conf.FieldDuration("metadata_max_age"); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *franzReader) toMessage(rec *kgo.Record) *service.Message {
	msg := service.NewMessage(rec.Value)
	msg.MetaSetMut("kafka_key", string(rec.Key))
	msg.MetaSetMut("kafka_topic", rec.Topic)
	msg.MetaSetMut("kafka_partition", int(rec.Partition))
	msg.MetaSetMut("kafka_offset", int(rec.Offset))
	msg.MetaSetMut("kafka_timestamp_unix", rec.Timestamp.Unix())
	msg.MetaSetMut("kafka_tombstone_message", rec.Value == nil)
	if r.multiHeader {
		grouped := map[string][]any{}
		for _, h := range rec.Headers {
			grouped[h.Key] = append(grouped[h.Key], string(h.Value))
		}
		for k, vs := range grouped {
			msg.MetaSetMut(k, vs)
		}
	} else {
		for _, h := range rec.Headers {
			msg.MetaSetMut(h.Key, string(h.Value))
		}
	}
	// Only the record's position is needed from here on (for the commit).
	rec.Key, rec.Value, rec.Headers = nil, nil, nil
	return msg
}

//------------------------------------------------------------------------------

// checkpointer tracks the batches of one partition that are in flight, in
// offset order, and tells which record may be committed when one is acked:
// the last record of the longest acknowledged prefix.
type checkpointer struct {
	queue   []*inflight
	pending int64 // messages in flight
}

type inflight struct {
	last *kgo.Record
	n    int64
	done bool
}

// track registers a batch of n messages ending at record last and returns the
// function to call (under the caller's lock) when it is acknowledged.
func (c *checkpointer) track(last *kgo.Record, n int64) func() *kgo.Record {
	e := &inflight{last: last, n: n}
	c.queue = append(c.queue, e)
	c.pending += n
	return func() *kgo.Record {
		if e.done {
			return nil
		}
		e.done = true
		c.pending -= e.n
		var release *kgo.Record
		i := 0
		for i < len(c.queue) && c.queue[i].done {
			release = c.queue[i].last
			c.queue[i] = nil
			i++
		}
		c.queue = c.queue[i:]
		return release
	}
}

// partition batches the records of one topic partition and tracks their acks.
type partition struct {
	mu        sync.Mutex
	batcher   *service.Batcher // nil: one message per batch
	topRecord *kgo.Record      // last record added to the batcher
	ckpt      checkpointer

	out    chan<- ackedBatch
	commit func(*kgo.Record)

	ctx    context.Context // cancelled when the partition is dropped or the input closes
	cancel context.CancelFunc
	done   chan struct{}
}

func newPartition(parent context.Context, policy service.BatchPolicy, res *service.Resources,
	out chan<- ackedBatch, commit func(*kgo.Record)) *partition {
	p := &partition{out: out, commit: commit, done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(parent)
	if !policy.IsNoop() {
		b, err := policy.NewBatcher(res)
		if err != nil {
			res.Logger().Errorf("Failed to create the batching policy, delivering messages one by one: %v", err)
		} else {
			p.batcher = b
		}
	}
	go p.flushLoop()
	return p
}

// flushLoop flushes the batcher when its period elapses.
func (p *partition) flushLoop() {
	defer close(p.done)
	if p.batcher == nil {
		return
	}
	defer func() { _ = p.batcher.Close(context.Background()) }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		wait, timed := p.batcher.UntilNext()
		p.mu.Unlock()
		if !timed {
			wait = 50 * time.Millisecond // no period configured: nothing to do but wait for close
		}
		timer.Reset(wait)
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
		}
		var out ackedBatch
		p.mu.Lock()
		if until, ok := p.batcher.UntilNext(); ok && until <= time.Millisecond {
			// Flush even when empty: that restarts the period (otherwise
			// UntilNext keeps answering "now" and this loop spins).
			if batch, _ := p.batcher.Flush(p.ctx); len(batch) > 0 && p.topRecord != nil {
				out = p.trackLocked(batch, p.topRecord)
			}
			p.topRecord = nil
		}
		p.mu.Unlock()
		if out.batch != nil && p.send(out) != nil {
			return
		}
	}
}

// trackLocked registers a batch ending at record last with the checkpointer;
// it is called under p.mu in the same critical section as the flush, so that
// batches are tracked in offset order.
func (p *partition) trackLocked(batch service.MessageBatch, last *kgo.Record) ackedBatch {
	release := p.ckpt.track(last, int64(len(batch)))
	return ackedBatch{batch: batch, onAck: func() {
		p.mu.Lock()
		rec := release()
		p.mu.Unlock()
		if rec != nil {
			p.commit(rec)
		}
	}}
}

// send hands a batch to ReadBatch, blocking until the pipeline takes it.
func (p *partition) send(b ackedBatch) error {
	select {
	case <-p.ctx.Done():
		return p.ctx.Err()
	case p.out <- b:
		return nil
	}
}

// add batches one record; it reports whether fetching the partition should
// pause (checkpoint_limit reached).
func (p *partition) add(msg *service.Message, rec *kgo.Record, limit int) bool {
	var out ackedBatch
	p.mu.Lock()
	if p.batcher == nil {
		out = p.trackLocked(service.MessageBatch{msg}, rec)
	} else if p.batcher.Add(msg) {
		if batch, _ := p.batcher.Flush(p.ctx); len(batch) > 0 {
			out = p.trackLocked(batch, rec)
		}
		p.topRecord = nil
	} else {
		p.topRecord = rec
	}
	p.mu.Unlock()
	if out.batch != nil {
		// An error means the partition is being dropped: the batch is then
		// neither delivered nor committed, so it is fetched again later.
		_ = p.send(out)
	}
	return p.overLimit(limit)
}

func (p *partition) overLimit(limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ckpt.pending >= int64(limit)
}

func (p *partition) close() {
	p.cancel()
	<-p.done
}

// partitions holds the trackers of the partitions this member consumes.
type partitions struct {
	mu     sync.Mutex
	byTP   map[string]map[int32]*partition
	ctx    context.Context
	res    *service.Resources
	policy service.BatchPolicy
	out    chan<- ackedBatch
	commit func(*kgo.Record)
}

func (ps *partitions) get(topic string, part int32) *partition {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	t := ps.byTP[topic]
	if t == nil {
		t = map[int32]*partition{}
		ps.byTP[topic] = t
	}
	p := t[part]
	if p == nil {
		p = newPartition(ps.ctx, ps.policy, ps.res, ps.out, ps.commit)
		t[part] = p
	}
	return p
}

func (ps *partitions) lookup(topic string, part int32) *partition {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.byTP[topic][part]
}

func (ps *partitions) remove(lost map[string][]int32) {
	ps.mu.Lock()
	var drop []*partition
	for topic, parts := range lost {
		for _, part := range parts {
			if p := ps.byTP[topic][part]; p != nil {
				drop = append(drop, p)
				delete(ps.byTP[topic], part)
			}
		}
		if len(ps.byTP[topic]) == 0 {
			delete(ps.byTP, topic)
		}
	}
	ps.mu.Unlock()
	for _, p := range drop {
		p.close()
	}
}

func (ps *partitions) closeAll() {
	ps.mu.Lock()
	var all []*partition
	for _, t := range ps.byTP {
		for _, p := range t {
			all = append(all, p)
		}
	}
	ps.byTP = map[string]map[int32]*partition{}
	ps.mu.Unlock()
	for _, p := range all {
		p.close()
	}
}

//------------------------------------------------------------------------------

// kgoLogger forwards franz-go's warnings and errors to the Benthos logger.
type kgoLogger struct{ l *service.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fmt.Fprintf(&b, " %v=%v", keyvals[i], keyvals[i+1])
	}
	switch level {
	case kgo.LogLevelError:
		k.l.Error(b.String())
	case kgo.LogLevelWarn:
		k.l.Warn(b.String())
	case kgo.LogLevelInfo:
		k.l.Info(b.String())
	default:
		k.l.Debug(b.String())
	}
}

// Connect creates the franz-go client and starts the fetch loop.
func (r *franzReader) Connect(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches != nil {
		return nil
	}
	if r.closing {
		return service.ErrEndOfInput
	}

	reset := kgo.NewOffset().AtEnd()
	if r.startFromOldest {
		reset = kgo.NewOffset().AtStart()
	}

	loopCtx, cancel := context.WithCancel(context.Background())
	batches := make(chan ackedBatch)
	var cl *kgo.Client
	commit := func(*kgo.Record) {}
	if r.group != "" {
		commit = func(rec *kgo.Record) { cl.MarkCommitRecords(rec) }
	}
	parts := &partitions{
		byTP: map[string]map[int32]*partition{}, ctx: loopCtx, res: r.res,
		policy: r.batchPolicy, out: batches, commit: commit,
	}

	opts := []kgo.Opt{
		kgo.SeedBrokers(r.brokers...),
		kgo.ConsumeTopics(r.topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.ClientID(r.clientID),
		kgo.Rack(r.rackID),
		kgo.MetadataMaxAge(r.metadataMaxAge),
		kgo.WithLogger(kgoLogger{r.log}),
	}
	if r.group != "" {
		opts = append(opts,
			kgo.ConsumerGroup(r.group),
			kgo.OnPartitionsRevoked(func(rctx context.Context, c *kgo.Client, revoked map[string][]int32) {
				if err := c.CommitMarkedOffsets(rctx); err != nil {
					r.log.Errorf("Failed to commit offsets on partition revoke: %v", err)
				}
				parts.remove(revoked)
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
				parts.remove(lost)
			}),
			kgo.AutoCommitMarks(),
			kgo.AutoCommitInterval(r.commitPeriod),
			kgo.SessionTimeout(r.sessionTimeout),
			kgo.HeartbeatInterval(r.heartbeatPeriod),
			kgo.RebalanceTimeout(r.rebalanceTimeout),
		)
	}
	var err error
	if cl, err = kgo.NewClient(opts...); err != nil {
		cancel()
		return err
	}

	stopped := make(chan struct{})
	r.batches, r.stopped, r.cancel = batches, stopped, cancel
	go r.fetchLoop(loopCtx, cl, parts, batches, stopped)
	return nil
}

func (r *franzReader) fetchLoop(ctx context.Context, cl *kgo.Client, parts *partitions,
	batches chan ackedBatch, stopped chan struct{}) {
	defer func() {
		parts.closeAll()
		cl.Close() // leaves the group; the revoke callback commits what was marked
		r.mu.Lock()
		r.batches = nil
		r.mu.Unlock()
		close(batches)
		close(stopped)
	}()
	for {
		// Bounded so that paused partitions are looked at again even when
		// nothing else arrives.
		pollCtx, done := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pollCtx)
		done()
		if ctx.Err() != nil {
			return
		}
		fatal := false
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			fatal = true
			if !errors.Is(fe.Err, kgo.ErrClientClosed) {
				r.log.Errorf("Kafka poll error on topic %v, partition %v: %v", fe.Topic, fe.Partition, fe.Err)
			}
		}
		if fatal {
			return // ReadBatch then reports ErrNotConnected and Benthos reconnects
		}

		pause := map[string][]int32{}
		for it := fetches.RecordIter(); !it.Done(); {
			rec := it.Next()
			p := parts.get(rec.Topic, rec.Partition)
			if p.add(r.toMessage(rec), rec, r.checkpointLimit) {
				pause[rec.Topic] = append(pause[rec.Topic], rec.Partition)
			}
			if ctx.Err() != nil {
				return
			}
		}
		resume := map[string][]int32{}
		for topic, ps := range cl.PauseFetchPartitions(pause) {
			for _, part := range ps {
				if p := parts.lookup(topic, part); p == nil || !p.overLimit(r.checkpointLimit) {
					resume[topic] = append(resume[topic], part)
				}
			}
		}
		if len(resume) > 0 {
			cl.ResumeFetchPartitions(resume)
		}
	}
}

// ReadBatch returns the next batch of one partition.
func (r *franzReader) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	r.mu.Lock()
	batches := r.batches
	r.mu.Unlock()
	if batches == nil {
		return nil, nil, service.ErrNotConnected
	}
	select {
	case b, open := <-batches:
		if !open {
			return nil, nil, service.ErrNotConnected
		}
		return b.batch, func(context.Context, error) error {
			// With auto_replay_nacks (the default) only successful writes are
			// acked here; nacked batches are retried by the wrapper.
			b.onAck()
			return nil
		}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Close stops fetching, leaves the group and commits the acknowledged offsets.
func (r *franzReader) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	cancel, stopped := r.cancel, r.stopped
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
