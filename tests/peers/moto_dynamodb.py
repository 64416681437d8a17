# moto helpers for edgegate's non-proxy AWS integration test (DynamoDB through VTL).
#   python3 moto_dynamodb.py setup PORT            -> {"ak", "sk"} (IAM auth on after setup; table "orders")
#   python3 moto_dynamodb.py get PORT AK SK ID     -> the item with that id, as DynamoDB holds it
import json
import sys

import boto3

from moto_iam import admin_session

cmd, port = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
if cmd == "setup":
    s, keys = admin_session(base)
    s.client("dynamodb", endpoint_url=base).create_table(
        TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    print(json.dumps(keys))
else:
    ak, sk, item_id = sys.argv[3], sys.argv[4], sys.argv[5]
    s = boto3.session.Session(aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
    item = s.client("dynamodb", endpoint_url=base).get_item(TableName="orders", Key={"id": {"S": item_id}}).get("Item")
    print(json.dumps(item))
