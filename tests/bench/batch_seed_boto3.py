#!/usr/bin/python3
"""The seed's polling cost, measured: one boto3 DescribeJobs per job id (as
ddeutil-workflow's AWSBatchProvider does, DD:496-547) for one full cycle over
the ids in IDS_FILE, against ENDPOINT.

Usage: batch_seed_boto3.py ENDPOINT REGION IDS_FILE
Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
Prints one JSON line: {"calls", "startup_cpu" (import + client, CPU s),
"startup_rss_mib", "cycle_cpu", "cycle_wall", "rss_mib" (peak, ru_maxrss),
"statuses": {status: n}}.  One client, one thread: a lower bound of the
seed's cost (it builds a boto3 session and clients per job).
"""
import json
import resource
import sys
import time


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    endpoint, region, path = sys.argv[1:4]
    with open(path) as f:
        ids = [line.strip() for line in f if line.strip()]
    import boto3
    import botocore.config
    client = boto3.client("batch", region_name=region, endpoint_url=endpoint,
                          config=botocore.config.Config(retries={"max_attempts": 3, "mode": "adaptive"}))
    startup_cpu, startup_rss = cpu(), rss_mib()
    statuses = {}
    c0, t0 = cpu(), time.monotonic()
    for jid in ids:
        ans = client.describe_jobs(jobs=[jid])
        for j in ans["jobs"]:
            statuses[j["status"]] = statuses.get(j["status"], 0) + 1
    wall, used = time.monotonic() - t0, cpu() - c0
    print(json.dumps({"calls": len(ids), "startup_cpu": startup_cpu, "startup_rss_mib": startup_rss,
                      "cycle_cpu": used, "cycle_wall": wall, "rss_mib": rss_mib(), "statuses": statuses}))


if __name__ == "__main__":
    main()
