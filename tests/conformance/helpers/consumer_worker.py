"""A consumer process built on the official SDK's ConsumerWorker.

Usage: consumer_worker.py ENDPOINT AK SK PROJECT LOGSTORE GROUP NAME OUTFILE

Appends one line per event to OUTFILE ("seq SHARD VALUE"), plus "init SHARD"
and "stop SHARD" as shards come and go, flushing before each checkpoint so
that what the checkpoint covers is on disk (at least once).
"""

import os
import signal
import sys
import time

from aliyun.log.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig

endpoint, ak, sk, project, logstore, group, name, outfile = sys.argv[1:9]
out = open(outfile, "a", buffering=1)


class Recorder(ConsumerProcessorBase):
    def initialize(self, shard):
        super().initialize(shard)
        out.write(f"init {shard}\n")

    def process(self, log_groups, check_point_tracker):
        for g in log_groups.LogGroups:
            for log in g.Logs:
                for c in log.Contents:
                    if c.Key == "seq":
                        out.write(f"seq {self.shard_id} {c.Value}\n")
        out.flush()
        os.fsync(out.fileno())
        self.save_checkpoint(check_point_tracker, force=True)

    def shutdown(self, check_point_tracker):
        out.write(f"stop {self.shard_id}\n")
        super().shutdown(check_point_tracker)


config = LogHubConfig(endpoint, ak, sk, project, logstore, group, name,
                      cursor_position=CursorPosition.BEGIN_CURSOR,
                      heartbeat_interval=2, data_fetch_interval=0.2)
worker = ConsumerWorker(Recorder, consumer_option=config)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
worker.start()
while not stop:
    time.sleep(0.2)
worker.shutdown()
