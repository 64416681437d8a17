# moto helpers for edgegate's non-proxy AWS integration test (DynamoDB through VTL).
#   python3 moto_dynamodb.py setup PORT            -> {"ak", "sk"} (IAM auth on after setup; table "orders")
#   python3 moto_dynamodb.py get PORT AK SK ID     -> the item with that id, as DynamoDB holds it
import json
import sys

import boto3

cmd, port = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
if cmd == "setup":
    s = boto3.session.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x", region_name="us-east-1")
    iam = s.client("iam", endpoint_url=base)
    iam.create_user(UserName="gw")
    key = iam.create_access_key(UserName="gw")["AccessKey"]
    iam.put_user_policy(UserName="gw", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    s.client("dynamodb", endpoint_url=base).create_table(
        TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    print(json.dumps({"ak": key["AccessKeyId"], "sk": key["SecretAccessKey"]}))
else:
    ak, sk, item_id = sys.argv[3], sys.argv[4], sys.argv[5]
    s = boto3.session.Session(aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
    item = s.client("dynamodb", endpoint_url=base).get_item(TableName="orders", Key={"id": {"S": item_id}}).get("Item")
    print(json.dumps(item))
