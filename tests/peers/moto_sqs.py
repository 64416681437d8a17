# moto helpers for edgegate's AWS service integration test.
#   python3 moto_sqs.py setup PORT          -> {"ak", "sk", "queue"} (IAM auth on after setup)
#   python3 moto_sqs.py receive PORT AK SK QUEUE_URL -> the bodies of the messages waiting
import json
import sys

import boto3

from moto_iam import admin_session

cmd, port = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
if cmd == "setup":
    s, keys = admin_session(base)
    q = s.client("sqs", endpoint_url=base).create_queue(QueueName="orders")["QueueUrl"]
    print(json.dumps({**keys, "queue": q}))
else:
    ak, sk, queue = sys.argv[3], sys.argv[4], sys.argv[5]
    s = boto3.session.Session(aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
    msgs = s.client("sqs", endpoint_url=base).receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    print(json.dumps([m["Body"] for m in msgs]))
