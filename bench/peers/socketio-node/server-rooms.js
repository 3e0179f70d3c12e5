'use strict';
// server.js with rooms, and nothing else changed: a client emits "join" with
// a room (socket.join), its messages carry that room through the one Redis
// channel, and every instance emits each message to that room's clients only
// (io.to(room).emit) instead of to all of them. `diff server.js server-rooms.js`
// shows the whole change. What follows is server.js's own description.
//
// The original design (see README.md), one instance:
//   client --event:message--> publish to Redis channel MESSAGES
//   every instance, on each Redis message: io.emit("message", it) to all its
//     clients, and produce it to the Kafka topic MESSAGES (every instance does)
//   a Kafka consumer (group "default") in every instance inserts each message
//     into Postgres, one row per message
// Kept as the original wrote it, including its flaws (N instances produce
// every message N times; the consumer pauses for 60 s on any database error).
const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');
const Redis = require('ioredis');
const { Kafka, logLevel } = require('kafkajs');
const { Pool } = require('pg');
const config = require('./config');

// --- apps/server/src/services/kafka.ts ---------------------------------------

const kafka = new Kafka({
  clientId: `peer-${config.port}`,
  brokers: config.kafkaBrokers,
  logLevel: logLevel.WARN,
});

// Prisma's place: one pool, one INSERT per message as prisma.message.create().
const pool = new Pool({ connectionString: config.databaseUrl });
const insertSql = `INSERT INTO "${config.table.replace(/"/g, '""')}" (id, text) VALUES ($1, $2)`;

let producer = null;

async function createProducer() {
  if (producer) return producer;
  const _producer = kafka.producer();
  await _producer.connect();
  producer = _producer;
  return producer;
}

async function produceMessage(message) {
  const p = await createProducer();
  await p.send({
    messages: [{ key: `message-${Date.now()}`, value: message }],
    topic: config.topic,
  });
  return true;
}

let consumer = null;

async function startMessageConsumer() {
  consumer = kafka.consumer({ groupId: 'default' });
  await consumer.connect();
  await consumer.subscribe({ topic: config.topic, fromBeginning: true });

  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ message, pause }) => {
      if (!message.value) return;
      try {
        await pool.query(insertSql, [crypto.randomUUID(), message.value.toString()]);
      } catch (err) {
        console.error(`consumer: insert failed (${err.message}); pausing for 60 s`);
        pause();
        setTimeout(() => {
          consumer.resume([{ topic: config.topic }]);
        }, 60 * 1000);
      }
    },
  });
}

// --- apps/server/src/services/socket.ts --------------------------------------

const pub = new Redis(config.redisUrl);
const sub = new Redis(config.redisUrl);

class SocketService {
  constructor() {
    this._io = new Server({ cors: { allowedHeaders: ['*'], origin: '*' } });
    sub.subscribe(config.channel);
  }

  initListeners() {
    const io = this.io;
    io.on('connect', (socket) => {
      socket.on('join', (room) => {
        socket.join(room);
        socket.data.room = room;
      });
      socket.on('event:message', async ({ message }) => {
        await pub.publish(config.channel, JSON.stringify({ room: socket.data.room, message }));
      });
    });

    sub.on('message', async (channel, message) => {
      if (channel === config.channel) {
        const { room } = JSON.parse(message);
        if (room !== undefined) io.to(room).emit('message', message);
        try {
          await produceMessage(message);
        } catch (err) {
          // The original let this rejection go unhandled; Node >= 15 would exit on it.
          console.error(`producer: ${err.message}`);
        }
      }
    });
  }

  get io() {
    return this._io;
  }
}

// --- apps/server/src/index.ts ------------------------------------------------

async function init() {
  startMessageConsumer().catch((err) => console.error(`consumer: ${err.message}`));
  const httpServer = http.createServer();
  const socketService = new SocketService();
  socketService.io.attach(httpServer);
  httpServer.listen(config.port, config.host, () => {
    console.log(`peer: socket.io listening on http://${config.host}:${config.port}/socket.io/ (pid ${process.pid})`);
  });
  socketService.initListeners();

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    socketService.io.close();
    await Promise.allSettled([
      consumer ? consumer.disconnect() : null,
      producer ? producer.disconnect() : null,
      pub.quit(),
      sub.quit(),
    ]);
    await pool.end().catch(() => {});
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

init();
