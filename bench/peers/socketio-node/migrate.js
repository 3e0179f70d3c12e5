'use strict';
// Run once before the instances start (the `run` script does): what
// `prisma migrate deploy` and the original's Kafka admin step did. Creates the
// table and the Kafka topic when they are missing; idempotent.
const { Kafka, logLevel } = require('kafkajs');
const { Client } = require('pg');
const config = require('./config');

function quoteIdent(name) {
  return '"' + name.replace(/"/g, '""') + '"';
}

async function migrateTable() {
  const client = new Client({ connectionString: config.databaseUrl });
  await client.connect();
  try {
    // The original's Prisma model: id (uuid made by the client), text, createdAt.
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${quoteIdent(config.table)} (
         id uuid PRIMARY KEY,
         text text NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now())`,
    );
  } finally {
    await client.end();
  }
}

async function migrateTopic() {
  const kafka = new Kafka({ clientId: 'peer-migrate', brokers: config.kafkaBrokers, logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(config.topic)) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [{ topic: config.topic, numPartitions: config.partitions }],
      });
    }
  } finally {
    await admin.disconnect();
  }
}

Promise.all([migrateTable(), migrateTopic()]).then(
  () => {
    console.log(`migrate: table "${config.table}" and topic "${config.topic}" are in place`);
  },
  (err) => {
    console.error(`migrate: ${err.message}`);
    process.exit(1);
  },
);
