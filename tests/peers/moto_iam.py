# The IAM user moto's tests sign with: created while moto still allows unsigned actions.
import json

import boto3


def admin_session(base):
    """A boto3 session for moto's setup calls, and the access key of a user allowed everything."""
    s = boto3.session.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x", region_name="us-east-1")
    iam = s.client("iam", endpoint_url=base)
    iam.create_user(UserName="gw")
    key = iam.create_access_key(UserName="gw")["AccessKey"]
    iam.put_user_policy(UserName="gw", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return s, {"ak": key["AccessKeyId"], "sk": key["SecretAccessKey"]}
