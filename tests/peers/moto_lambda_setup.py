# Prepares a moto server for edgegate's peer tests: IAM auth on (the first actions are free,
# so this script can create a user and its key), a Lambda function "auth" on the simple
# (docker-less) backend, and its queued answer. Prints the key as JSON.
#   python3 moto_lambda_setup.py PORT
import io
import json
import sys
import zipfile

import requests

from moto_iam import admin_session

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
requests.post(f"{base}/moto-api/config", json={"lambda": {"use_docker": False}})
s, keys = admin_session(base)
iam = s.client("iam", endpoint_url=base)
role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
buf = io.BytesIO(); z = zipfile.ZipFile(buf, "w"); z.writestr("h.py", "def h(e, c): return {}"); z.close()
lam = s.client("lambda", endpoint_url=base)
lam.create_function(FunctionName="auth", Runtime="python3.11", Role=role, Handler="h.h", Code={"ZipFile": buf.getvalue()})
requests.post(f"{base}/moto-api/static/lambda-simple/response", json={"results": [json.dumps({"principalId":"moto-user","policyDocument":{"Version":"2012-10-17","Statement":[{"Action":"execute-api:Invoke","Effect":"Allow","Resource":"*"}]}})], "region": "us-east-1"})
print(json.dumps(keys))
