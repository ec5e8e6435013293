"""Conformance of devstack's cloud server with Alibaba's official Python SDKs
(aliyun-python-sdk-core with the -tag, -sts, -ecs and -slb product packages,
pinned in requirements.txt): signature V2 as the SDK core computes it,
ListTagResources of the Tag service by ARN (management account and, after
STS AssumeRole, a member account), the per-product ECS and SLB calls, the
error codes of the notes, and throttling.
"""

import json
import os
import subprocess
import threading
import urllib.request

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526.ListTagResourcesRequest import ListTagResourcesRequest as EcsListTags
from aliyunsdkslb.request.v20140515.ListTagResourcesRequest import ListTagResourcesRequest as SlbListTags
from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest
from aliyunsdktag.request.v20180828.ListTagResourcesRequest import ListTagResourcesRequest

from conftest import devstack_bin

AK = "cloud-ak"
SK = "cloud-secret"


class Cloud:
    """A ``trail-devstack cloud`` process over the seed-7 estate."""

    def __init__(self, tmp_path, *args):
        tags = tmp_path / "tags.json"
        subprocess.run(
            [devstack_bin(), "gen", "--events", "0", "--seed", "7", "--tags-out", str(tags)],
            check=True, capture_output=True,
        )
        self.resources = json.loads(tags.read_text())["resources"]
        # The management account: the first resource's; members: the others.
        self.management = self.resources[0]["arn"].split(":")[4]
        cmd = [
            devstack_bin(), "cloud", "--listen", "127.0.0.1:0",
            "--access-key-id", AK, "--access-key-secret", SK,
            "--tags", str(tags), "--management-account", self.management, *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, RUST_LOG="warn"))
        first = self.proc.stdout.readline()
        assert first.startswith("listening on "), first
        self.addr = first.split()[-1]
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def admin(self, method, path, body=None):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.addr}/_devstack/{path}", data=data, method=method)
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def client(self, credential=None, region="cn-hangzhou"):
        if credential is None:
            c = AcsClient(AK, SK, region, auto_retry=False)
        else:
            c = AcsClient(region_id=region, credential=credential, auto_retry=False)
        return c

    def call(self, client, request):
        request.set_endpoint(self.addr)
        request.set_protocol_type("http")
        return json.loads(client.do_action_with_exception(request))

    def of(self, account, product=None):
        return [r for r in self.resources
                if r["arn"].split(":")[4] == account and (product is None or r["arn"].split(":")[2] == product)]

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def cloud(tmp_path):
    c = Cloud(tmp_path)
    yield c
    c.stop()


def by_region(resources):
    out = {}
    for r in resources:
        out.setdefault(r["arn"].split(":")[3], []).append(r)
    return out


def list_tags(cloud, client, arns, region):
    req = ListTagResourcesRequest()
    req.set_ResourceARNs(arns)
    req.set_PageSize(50)
    client.set_region_id(region)
    return cloud.call(client, req)


def test_tag_list_tag_resources_by_arn_for_the_management_account(cloud):
    mine = [r for r in cloud.of(cloud.management) if r["arn"].startswith("arn:")]
    region, rs = next(iter(by_region(mine).items()))
    rs = rs[:50]
    resp = list_tags(cloud, cloud.client(), [r["arn"] for r in rs], region)
    got = {t["ResourceARN"]: {x["Key"]: x["Value"] for x in t["Tags"]} for t in resp["TagResources"]}
    assert got == {r["arn"]: r["tags"] for r in rs}
    assert resp["NextToken"] == ""
    assert all(x["Category"] in ("Custom", "System") for t in resp["TagResources"] for x in t["Tags"])


def test_unknown_arns_are_omitted_and_51_arns_are_refused(cloud):
    acct = cloud.management
    resp = list_tags(cloud, cloud.client(), [f"arn:acs:ecs:cn-hangzhou:{acct}:instance/i-nope"], "cn-hangzhou")
    assert resp["TagResources"] == []
    with pytest.raises(ServerException) as e:
        list_tags(cloud, cloud.client(), [f"arn:acs:ecs:cn-hangzhou:{acct}:instance/i-{n}" for n in range(51)], "cn-hangzhou")
    assert e.value.get_error_code() == "NumberExceed.ResourceIds"


def test_region_and_format_errors(cloud):
    acct = cloud.management
    with pytest.raises(ServerException) as e:
        list_tags(cloud, cloud.client(), [f"arn:acs:ecs:cn-beijing:{acct}:instance/i-1"], "cn-hangzhou")
    assert e.value.get_error_code() == "InvalidResourceARN.Region"
    with pytest.raises(ServerException) as e:
        list_tags(cloud, cloud.client(), ["not-an-arn"], "cn-hangzhou")
    assert e.value.get_error_code() == "InvalidResourceARN.FormatError"


def test_a_wrong_secret_is_signature_does_not_match(cloud):
    bad = AcsClient(AK, "wrong", "cn-hangzhou", auto_retry=False)
    with pytest.raises(ServerException) as e:
        list_tags(cloud, bad, [f"arn:acs:ecs:cn-hangzhou:{cloud.management}:instance/i-1"], "cn-hangzhou")
    # The SDK compares the server's string to sign (in the message) with its
    # own: equal strings mean the secret is wrong, which it reports as
    # InvalidAccessKeySecret. So this also proves devstack canonicalizes
    # exactly as the SDK does.
    assert e.value.get_error_code() == "InvalidAccessKeySecret"


def test_members_need_assume_role_then_their_session_reads_their_tags(cloud):
    member = next(r["arn"].split(":")[4] for r in cloud.resources
                  if r["arn"].split(":")[4] != cloud.management and r["arn"].startswith("arn:"))
    theirs = [r for r in cloud.of(member) if r["arn"].startswith("arn:")]
    region, rs = next(iter(by_region(theirs).items()))
    arns = [r["arn"] for r in rs[:50]]
    with pytest.raises(ServerException) as e:
        list_tags(cloud, cloud.client(), arns, region)
    assert e.value.get_error_code() == "InvalidResourceARN.Account"

    req = AssumeRoleRequest()
    req.set_RoleArn(f"acs:ram::{member}:role/resourcedirectoryaccountaccessrole")
    req.set_RoleSessionName("trail-tags")
    req.set_DurationSeconds(900)
    creds = cloud.call(cloud.client(), req)["Credentials"]
    assert creds["AccessKeyId"].startswith("STS.")
    assert creds["Expiration"].endswith("Z")
    session = cloud.client(StsTokenCredential(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"]))
    resp = list_tags(cloud, session, arns, region)
    assert {t["ResourceARN"] for t in resp["TagResources"]} == set(arns)
    # A session key with another token is refused.
    forged = cloud.client(StsTokenCredential(creds["AccessKeyId"], creds["AccessKeySecret"], "forged"))
    with pytest.raises(ServerException) as e:
        list_tags(cloud, forged, arns, region)
    assert e.value.get_error_code().startswith("InvalidSecurityToken")
    assert cloud.admin("GET", "stats")["sessions_issued"] == 1


def test_assume_role_errors(cloud):
    req = AssumeRoleRequest()
    req.set_RoleArn("acs:ram::1999999999999999:role/resourcedirectoryaccountaccessrole")
    req.set_RoleSessionName("trail-tags")
    with pytest.raises(ServerException) as e:
        cloud.call(cloud.client(), req)
    assert e.value.get_error_code() == "EntityNotExist.Role"
    req = AssumeRoleRequest()
    req.set_RoleArn(f"acs:ram::{cloud.management}:role/resourcedirectoryaccountaccessrole")
    req.set_RoleSessionName("trail-tags")
    req.set_DurationSeconds(100)
    with pytest.raises(ServerException) as e:
        cloud.call(cloud.client(), req)
    assert e.value.get_error_code() == "InvalidParameter.DurationSeconds"


def test_ecs_and_slb_list_tag_resources_one_row_per_tag(cloud):
    for product, request, kind in (("ecs", EcsListTags, "instance"), ("slb", SlbListTags, "instance")):
        rs = [r for r in cloud.of(cloud.management, product) if r["arn"].split(":")[5].startswith(kind + "/")]
        assert rs, f"the estate has {product} resources"
        region, rs = next(iter(by_region(rs).items()))
        rs = rs[:20]
        req = request()
        req.set_ResourceType(kind)
        req.set_ResourceIds([r["arn"].rsplit("/", 1)[1] for r in rs])
        client = cloud.client(region=region)
        resp = cloud.call(client, req)
        rows = resp["TagResources"]["TagResource"]
        assert len(rows) == sum(len(r["tags"]) for r in rs)
        want = {(r["arn"].rsplit("/", 1)[1], k, v) for r in rs for k, v in r["tags"].items()}
        assert {(x["ResourceId"], x["TagKey"], x["TagValue"]) for x in rows} == want


def test_throttling_answers_throttling_user(cloud):
    cloud.admin("PUT", "faults", {"throttle_every": 1})
    with pytest.raises(ServerException) as e:
        list_tags(cloud, cloud.client(), [f"arn:acs:ecs:cn-hangzhou:{cloud.management}:instance/i-1"], "cn-hangzhou")
    assert e.value.get_error_code() == "Throttling.User"
    cloud.admin("PUT", "faults", {"throttle_every": 0})
    stats = cloud.admin("GET", "stats")
    assert stats["answers"]["tag:ListTagResources"]["Throttling.User"] == 1
