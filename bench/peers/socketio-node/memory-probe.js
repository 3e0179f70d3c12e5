'use strict';
// Loaded before the server with `node --expose-gc -r ./memory-probe.js`
// (run does so when PEER_MEMORY_DIR is set), so neither server file changes.
// On SIGUSR2 it collects garbage, then writes what the process holds to
// $PEER_MEMORY_DIR/memory-<pid>.json: RSS and V8's heap after a full GC, so
// an idle-memory figure is not garbage that a later collection would free.
const fs = require('node:fs');
const path = require('node:path');
const v8 = require('node:v8');

const dir = process.env.PEER_MEMORY_DIR;
if (dir) {
  process.on('SIGUSR2', () => {
    const gcRan = typeof global.gc === 'function';
    if (gcRan) {
      // Twice: the first pass may leave objects with finalizers for the second.
      global.gc();
      global.gc();
    }
    const m = process.memoryUsage();
    const h = v8.getHeapStatistics();
    const out = {
      pid: process.pid,
      gc: gcRan,
      at_ms: Date.now(),
      rss_bytes: m.rss,
      heap_used_bytes: m.heapUsed,
      heap_total_bytes: m.heapTotal,
      external_bytes: m.external,
      array_buffers_bytes: m.arrayBuffers,
      v8_used_heap_size: h.used_heap_size,
      v8_total_heap_size: h.total_heap_size,
      v8_malloced_memory: h.malloced_memory,
    };
    const file = path.join(dir, `memory-${process.pid}.json`);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(out));
    fs.renameSync(`${file}.tmp`, file);  // readers never see half a file
  });
}
