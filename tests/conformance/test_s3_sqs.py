"""Conformance of devstack's S3 and SQS with AWS's official Python SDK,
boto3 (pinned in requirements.txt, default configuration: SigV4, S3's
default checksums, SQS's JSON protocol): what a CloudTrail collector does
with them — buckets and objects, listings with prefixes, delimiters,
pages and URL-encoded keys, bucket notifications into a queue, and the
queue's receive / visibility / delete cycle — and the errors the SDK
turns into codes. And STS, as a reader in another account gets in: roles
with external ids, sessions whose token S3, SQS and STS check, web
identity, and container credentials as botocore's own providers fetch them.
"""

import gzip
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError

from conftest import devstack_bin

AK = "AKIACONFORMANCE00001"
SK = "conformance/secret/key/0000000000000000000"
REGION = "us-east-1"


class Aws:
    """A ``trail-devstack s3`` process."""

    def __init__(self, *args):
        cmd = [devstack_bin(), "s3", "--listen", "127.0.0.1:0",
               "--access-key-id", AK, "--secret-access-key", SK, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, RUST_LOG="warn"))
        first = self.proc.stdout.readline()
        assert first.startswith("listening on "), first
        self.addr = first.split()[-1]
        self.port = int(self.addr.rsplit(":", 1)[1])
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://{self.addr}"

    def client(self, service, secret=SK, key=AK, **config):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, **config),
        )

    def admin(self, method, path, body=None):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.addr}/_devstack/{path}", data=data, method=method)
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self):
        assert self.proc.poll() is None, "devstack must never die on client input"
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def aws():
    a = Aws()
    yield a
    a.stop()


def code(err):
    return err.value.response["Error"]["Code"]


def test_objects_round_trip_with_the_sdks_default_checksums(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="trail")
    body = gzip.compress(b'{"Records":[]}')
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/12/03/123456789012_CloudTrail_us-east-1_20261203T1805Z_ABCDEFGHIJKLMNOP.json.gz"
    put = s3.put_object(Bucket="trail", Key=key, Body=body)
    head = s3.head_object(Bucket="trail", Key=key)
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    got = s3.get_object(Bucket="trail", Key=key)
    assert got["Body"].read() == body
    # A file object body takes the SDK's streaming path.
    import io
    s3.put_object(Bucket="trail", Key="stream.bin", Body=io.BytesIO(b"x" * 100_000))
    assert s3.get_object(Bucket="trail", Key="stream.bin")["Body"].read() == b"x" * 100_000
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="trail", Key="missing")
    assert code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="trail", Key="missing")
    assert code(e) == "404"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="nobucket", Key="k")
    assert code(e) == "NoSuchBucket"
    s3.delete_object(Bucket="trail", Key="stream.bin")
    with pytest.raises(ClientError):
        s3.head_object(Bucket="trail", Key="stream.bin")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["trail"]


def test_listings_page_roll_up_and_decode_keys_as_s3_does(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="b")
    keys = [f"AWSLogs/1/CloudTrail/us-east-1/2026/12/0{d}/f{i}.json.gz" for d in (1, 2, 3) for i in range(3)]
    keys += ["AWSLogs/1/CloudTrail-Digest/us-east-1/2026/12/01/d.json.gz", "odd key+plus/ü é.json"]
    for k in keys:
        s3.put_object(Bucket="b", Key=k, Body=b"{}")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="b", PaginationConfig={"PageSize": 2})
    listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert listed == sorted(keys)
    r = s3.list_objects_v2(Bucket="b", Prefix="AWSLogs/1/CloudTrail/us-east-1/2026/12/", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == [
        f"AWSLogs/1/CloudTrail/us-east-1/2026/12/0{d}/" for d in (1, 2, 3)]
    assert "Contents" not in r
    # Rolled-up prefixes page too, and are not repeated across pages.
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="b", Prefix="AWSLogs/1/", Delimiter="/", PaginationConfig={"PageSize": 1})
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["AWSLogs/1/CloudTrail-Digest/", "AWSLogs/1/CloudTrail/"]
    r = s3.list_objects_v2(Bucket="b", StartAfter="AWSLogs/1/CloudTrail/us-east-1/2026/12/02/f2.json.gz", Prefix="AWSLogs/1/CloudTrail/")
    assert [o["Key"] for o in r["Contents"]][0].endswith("03/f0.json.gz")
    r = s3.list_objects_v2(Bucket="b", Prefix="odd")
    assert r["Contents"][0]["Key"] == "odd key+plus/ü é.json"
    assert s3.get_object(Bucket="b", Key="odd key+plus/ü é.json")["Body"].read() == b"{}"


def test_virtual_host_addressing(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="vhost")
    v = boto3.client(
        "s3", endpoint_url=f"http://s3.devstack.test:{aws.port}", region_name=REGION,
        aws_access_key_id=AK, aws_secret_access_key=SK,
        config=Config(s3={"addressing_style": "virtual"}, proxies={"http": aws.endpoint}),
    )
    v.put_object(Bucket="vhost", Key="a/b.json", Body=b"1")
    assert v.get_object(Bucket="vhost", Key="a/b.json")["Body"].read() == b"1"
    assert [o["Key"] for o in v.list_objects_v2(Bucket="vhost")["Contents"]] == ["a/b.json"]


def test_wrong_credentials_are_refused_with_the_codes_aws_uses(aws):
    with pytest.raises(ClientError) as e:
        aws.client("s3", secret="wrong").list_buckets()
    assert code(e) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as e:
        aws.client("s3", key="AKIAUNKNOWN000000000").list_buckets()
    assert code(e) == "InvalidAccessKeyId"
    with pytest.raises(ClientError) as e:
        aws.client("sqs", secret="wrong").list_queues()
    assert code(e) == "SignatureDoesNotMatch"
    # Signed for another region: refused, as AWS does.
    other = boto3.client("sqs", endpoint_url=aws.endpoint, region_name="eu-west-1",
                         aws_access_key_id=AK, aws_secret_access_key=SK)
    with pytest.raises(ClientError) as e:
        other.list_queues()
    assert code(e) == "SignatureDoesNotMatch"


def test_bucket_notifications_announce_each_new_object_to_the_queue(aws):
    s3, sqs = aws.client("s3"), aws.client("sqs")
    s3.create_bucket(Bucket="trail")
    url = sqs.create_queue(QueueName="trail-files")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket="trail", NotificationConfiguration={
        "QueueConfigurations": [{
            "Id": "cloudtrail", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "AWSLogs/"}]}},
        }]})
    conf = s3.get_bucket_notification_configuration(Bucket="trail")["QueueConfigurations"]
    assert conf[0]["QueueArn"] == arn and conf[0]["Events"] == ["s3:ObjectCreated:*"]
    # S3 proves the destination with a test event first.
    m = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"][0]
    assert json.loads(m["Body"])["Event"] == "s3:TestEvent"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    s3.put_object(Bucket="trail", Key="elsewhere/x", Body=b"1")
    s3.put_object(Bucket="trail", Key="AWSLogs/1/CloudTrail/us-east-1/2026/12/03/a b.json.gz", Body=b"12")
    m = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert len(m) == 1
    rec = json.loads(m[0]["Body"])["Records"][0]
    assert rec["eventSource"] == "aws:s3" and rec["eventName"] == "ObjectCreated:Put"
    assert rec["s3"]["bucket"]["name"] == "trail"
    assert rec["s3"]["object"]["key"] == "AWSLogs/1/CloudTrail/us-east-1/2026/12/03/a+b.json.gz"
    assert rec["s3"]["object"]["size"] == 2
    with pytest.raises(ClientError) as e:
        s3.put_bucket_notification_configuration(Bucket="trail", NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:123456789012:none", "Events": ["s3:ObjectCreated:*"]}]})
    assert code(e) == "InvalidArgument"


def test_a_received_message_hides_for_its_visibility_timeout_and_only_its_latest_receipt_deletes_it(aws):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    assert sqs.get_queue_url(QueueName="q")["QueueUrl"] == url
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert sent["MD5OfMessageBody"] == "5d41402abc4b2a76b9719d911017c592"
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1, AttributeNames=["All"])["Messages"][0]
    assert first["Body"] == "hello" and first["Attributes"]["ApproximateReceiveCount"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    time.sleep(1.3)
    second = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, VisibilityTimeout=1,
                                 AttributeNames=["All"])["Messages"][0]
    assert second["MessageId"] == first["MessageId"]
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    # The first receipt is stale: accepted, does nothing.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    # Extending the in-flight message keeps it hidden past its first timeout.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=5)
    time.sleep(1.3)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=5)
    assert code(e) == "AWS.SimpleQueueService.MessageNotInflight"
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert code(e) == "ReceiptHandleIsInvalid"
    with pytest.raises(ClientError) as e:
        sqs.get_queue_url(QueueName="nope")
    assert code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert code(e) == "InvalidParameterValue"


def test_a_long_poll_returns_when_a_message_arrives_and_batches_delete(aws):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="lp")["QueueUrl"]
    threading.Timer(0.5, lambda: aws.client("sqs").send_message(QueueUrl=url, MessageBody="late")).start()
    started = time.time()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"]
    assert got[0]["Body"] == "late" and time.time() - started < 5
    started = time.time()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.time() - started >= 0.9
    for i in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(batch) == 10
    r = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    assert len(r["Successful"]) == 10 and not r.get("Failed")
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in rest) == sorted(set(f"m{i}" for i in range(12)) - {m["Body"] for m in batch})


def test_faults_are_what_the_sdk_retries(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="f")
    s3.put_object(Bucket="f", Key="k", Body=b"v")
    aws.admin("PUT", "faults", {"fail_every": 2, "ops": ["GetObject"]})
    for _ in range(4):  # every second GetObject fails; the SDK's retry gets through
        assert s3.get_object(Bucket="f", Key="k")["Body"].read() == b"v"
    aws.admin("PUT", "faults", {"fail_every": 1, "fail_status": 503, "ops": ["GetObject"]})
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="f", Key="k")
    assert code(e) == "ServiceUnavailable"
    stats = aws.admin("GET", "stats")
    assert stats["answers"]["GetObject"]["fault 503"] >= 5


def test_the_generator_delivers_cloudtrail_files_as_aws_does(aws, tmp_path):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="ct")["QueueUrl"]
    tags = tmp_path / "tags.json"
    subprocess.run(
        [devstack_bin(), "gen", "--cloudtrail", "--events", "250", "--records-per-file", "100",
         "--s3-endpoint", aws.endpoint, "--bucket", "org-trail", "--org", "o-abc123defg",
         "--sns-queue", url, "--tags-out", str(tags),
         "--aws-access-key-id", AK, "--aws-secret-access-key", SK],
        check=True, capture_output=True,
    )
    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="org-trail")["Contents"]]
    assert len(keys) == 3
    records = 0
    for k in keys:
        parts = k.split("/")
        assert parts[0] == "AWSLogs" and parts[1] == "o-abc123defg" and parts[3] == "CloudTrail"
        assert parts[-1].startswith(f"{parts[2]}_CloudTrail_{parts[4]}_") and k.endswith(".json.gz")
        doc = json.loads(gzip.decompress(s3.get_object(Bucket="org-trail", Key=k)["Body"].read()))
        records += len(doc["Records"])
        assert all(r["recipientAccountId"] == parts[2] for r in doc["Records"])
    assert records == 250
    announced = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            break
        for m in got:
            note = json.loads(m["Body"])
            assert note["Type"] == "Notification"
            inner = json.loads(note["Message"])
            assert inner["s3Bucket"] == "org-trail"
            announced += inner["s3ObjectKey"]
    assert sorted(announced) == sorted(keys)
    arns = [r["arn"] for r in json.loads(tags.read_text())["resources"]]
    assert arns and all(a.startswith("arn:aws:") for a in arns)


# --- STS: roles with external ids, sessions, container credentials --------

ROLE = "arn:aws:iam::210987654321:role/trail-reader"
OPEN_ROLE = "arn:aws:iam::210987654321:role/open"
EXTERNAL_ID = "trail-ext-4f9c2a"
WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0cmFpbCJ9.c2lnbmF0dXJl"
CONTAINER_TOKEN = "container-token-for-conformance"


@pytest.fixture
def aws_roles():
    """devstack whose S3 and SQS let only role sessions read; the key still
    writes (as CloudTrail does into the bucket)."""
    a = Aws("--role", f"{ROLE}:{EXTERNAL_ID}", "--role", OPEN_ROLE, "--require-role",
            "--bucket", "trail", "--queue", "trail-files",
            "--web-identity-token", WEB_TOKEN, "--container-token", CONTAINER_TOKEN)
    yield a
    a.stop()


def session_client(aws, service, creds):
    return boto3.client(
        service, endpoint_url=aws.endpoint, region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def assume(aws, **kw):
    return aws.client("sts").assume_role(
        RoleArn=ROLE, RoleSessionName="conformance", ExternalId=EXTERNAL_ID, **kw)


def test_sts_assume_role_with_the_external_id_gives_credentials_that_read_the_bucket(aws_roles):
    from datetime import datetime, timezone
    base = aws_roles.client("s3")
    base.put_object(Bucket="trail", Key="AWSLogs/1/CloudTrail/a.json.gz", Body=b"{}")
    with pytest.raises(ClientError) as e:
        base.list_objects_v2(Bucket="trail")
    assert code(e) == "AccessDenied"
    sts = aws_roles.client("sts")
    assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/devstack"
    r = assume(aws_roles, DurationSeconds=900)
    c = r["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and len(c["AccessKeyId"]) == 20
    assert len(c["SecretAccessKey"]) == 40 and c["SessionToken"]
    left = (c["Expiration"] - datetime.now(timezone.utc)).total_seconds()
    assert 880 <= left <= 905, left
    assert r["AssumedRoleUser"]["Arn"] == "arn:aws:sts::210987654321:assumed-role/trail-reader/conformance"
    s3 = session_client(aws_roles, "s3", c)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="trail")["Contents"]]
    assert keys == ["AWSLogs/1/CloudTrail/a.json.gz"]
    assert s3.get_object(Bucket="trail", Key=keys[0])["Body"].read() == b"{}"
    sqs = session_client(aws_roles, "sqs", c)
    url = sqs.get_queue_url(QueueName="trail-files")["QueueUrl"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    who = session_client(aws_roles, "sts", c).get_caller_identity()
    assert who["Arn"] == r["AssumedRoleUser"]["Arn"] and who["Account"] == "210987654321"
    stats = aws_roles.admin("GET", "stats")
    assert stats["answers"]["AssumeRole"]["200"] == 1
    assert stats["sts_sessions_issued"] == 1 and stats["sts_sessions_live"] == 1


def test_sts_a_wrong_or_missing_external_id_is_access_denied(aws_roles):
    sts = aws_roles.client("sts")
    for kw in ({"ExternalId": "trail-ext-wrong"}, {}):
        with pytest.raises(ClientError) as e:
            sts.assume_role(RoleArn=ROLE, RoleSessionName="conformance", **kw)
        assert code(e) == "AccessDenied"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # A role that does not exist: the same answer (STS does not tell).
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn="arn:aws:iam::210987654321:role/nope", RoleSessionName="conformance")
    assert code(e) == "AccessDenied"
    # A role without an external id takes any caller of the account's key.
    sts.assume_role(RoleArn=OPEN_ROLE, RoleSessionName="conformance")
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=OPEN_ROLE, RoleSessionName="conformance", DurationSeconds=7200)
    assert code(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        aws_roles.client("sts", secret="wrong").assume_role(RoleArn=OPEN_ROLE, RoleSessionName="conformance")
    assert code(e) == "SignatureDoesNotMatch"
    assert aws_roles.admin("GET", "stats")["answers"]["AssumeRole"]["AccessDenied"] == 3


def test_sts_an_empty_external_id_is_a_validation_error_not_no_external_id(aws_roles):
    # botocore refuses it before sending; a client that does not validate
    # sends `ExternalId=` as is, and STS holds it to its minimum length 2.
    sts = aws_roles.client("sts", parameter_validation=False)
    for role in (ROLE, OPEN_ROLE):
        with pytest.raises(ClientError) as e:
            sts.assume_role(RoleArn=role, RoleSessionName="conformance", ExternalId="")
        assert code(e) == "ValidationError", role
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "length greater than or equal to 2" in e.value.response["Error"]["Message"]
    with pytest.raises(ParamValidationError):
        aws_roles.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="conformance", ExternalId="")
    assert aws_roles.admin("GET", "stats")["answers"]["AssumeRole"]["ValidationError"] == 2


def test_sts_a_request_signed_with_a_tampered_session_token_is_refused(aws_roles):
    c = assume(aws_roles)["Credentials"]
    token = c["SessionToken"]
    tampered = dict(c, SessionToken=token[:20] + ("A" if token[20] != "A" else "B") + token[21:])
    with pytest.raises(ClientError) as e:
        session_client(aws_roles, "s3", tampered).list_objects_v2(Bucket="trail")
    assert code(e) == "InvalidToken"
    with pytest.raises(ClientError) as e:
        session_client(aws_roles, "sqs", tampered).list_queues()
    assert code(e) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as e:
        session_client(aws_roles, "sts", tampered).get_caller_identity()
    assert code(e) == "InvalidClientTokenId"
    # The session's key without its token, and with a wrong secret.
    bare = boto3.client("s3", endpoint_url=aws_roles.endpoint, region_name=REGION,
                        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"])
    with pytest.raises(ClientError) as e:
        bare.list_objects_v2(Bucket="trail")
    assert code(e) == "InvalidToken"
    with pytest.raises(ClientError) as e:
        session_client(aws_roles, "s3", dict(c, SecretAccessKey="x" * 40)).list_objects_v2(Bucket="trail")
    assert code(e) == "SignatureDoesNotMatch"
    # The untouched session still reads.
    session_client(aws_roles, "s3", c).list_objects_v2(Bucket="trail")


def test_sts_botocores_own_assume_role_provider_reads_a_profile_with_an_external_id(aws_roles, tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text(
        f"[profile base]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n\n"
        f"[profile reader]\nrole_arn = {ROLE}\nexternal_id = {EXTERNAL_ID}\nsource_profile = base\n"
        f"role_session_name = botocore\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_roles.endpoint)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    s3 = boto3.Session(profile_name="reader", region_name=REGION).client("s3")
    assert s3.list_objects_v2(Bucket="trail")["KeyCount"] == 0
    assert aws_roles.admin("GET", "stats")["answers"]["AssumeRole"]["200"] == 1


def test_sts_web_identity_and_container_credentials_as_botocore_fetches_them(aws_roles):
    from botocore.credentials import ContainerProvider
    sts = aws_roles.client("sts")
    r = sts.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="pod", WebIdentityToken=WEB_TOKEN)
    assert r["AssumedRoleUser"]["Arn"].endswith("assumed-role/trail-reader/pod")
    session_client(aws_roles, "s3", r["Credentials"]).list_objects_v2(Bucket="trail")
    with pytest.raises(ClientError) as e:
        sts.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="pod", WebIdentityToken="forged.jwt.x")
    assert code(e) == "InvalidIdentityToken"
    # botocore's own container provider, pointed at devstack (loopback http).
    uri = f"{aws_roles.endpoint}/_devstack/container-credentials"
    creds = ContainerProvider(environ={
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN,
    }).load().get_frozen_credentials()
    assert creds.access_key.startswith("ASIA") and creds.token
    session_client(aws_roles, "s3", {"AccessKeyId": creds.access_key, "SecretAccessKey": creds.secret_key,
                                     "SessionToken": creds.token}).list_objects_v2(Bucket="trail")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(urllib.request.Request(uri, headers={"Authorization": "wrong"}), timeout=10)
    assert e.value.code == 401
    assert aws_roles.admin("GET", "stats")["answers"]["ContainerCredentials"] == {"200": 1, "AccessDenied": 1}
