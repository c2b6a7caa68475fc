#!/usr/bin/python3
"""Signing rate of botocore (the anchor) for the same requests luabatch signs.

usage: sigv4_botocore.py N   -> prints 'botocore <N> signatures <seconds> s'
(seconds of process CPU time, as tests/bench/sigv4.lua and sigv4_c.c measure)
The requests mirror tests/bench/sigv4.lua: an S3 GET with a Range header and
a Batch POST with a JSON body and a session token, alternating."""
import sys
import time

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

n = int(sys.argv[1])
creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example")
s3 = S3SigV4Auth(creds, "s3", "us-east-1")
batch = SigV4Auth(creds, "batch", "us-east-1")
body = b'{"jobs":["' + b'a' * 36 + b'"]}'
t0 = time.process_time()
for i in range(n):
    if i % 2 == 0:
        r = AWSRequest(method="GET", url="https://bucket.s3.us-east-1.amazonaws.com/runs/r1/result.json",
                       headers={"Range": "bytes=0-1023"})
        s3.add_auth(r)
    else:
        r = AWSRequest(method="POST", url="https://batch.us-east-1.amazonaws.com/v1/describejobs",
                       data=body, headers={"Content-Type": "application/json"})
        batch.add_auth(r)
dt = time.process_time() - t0
print("botocore %d signatures %.4f s" % (n, dt))
