//! The cloud calls: one function each, answering as the services do
//! (events-and-tags.md §2–§4).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::{ali_error, aws_error, request_id, Call, CloudState, Reply, Session};

/// `arn:acs:{product}:{region}:{account}:{type}/{id}` or `acs:ram::{account}:…`
/// (and AWS `arn:aws:…`): the account field.
pub fn arn_account(arn: &str) -> Option<&str> {
    arn_fields(arn).map(|f| f.2)
}

/// (product, region, account, resource) of an ARN.
fn arn_fields(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = arn
        .strip_prefix("arn:acs:")
        .or_else(|| arn.strip_prefix("acs:"))
        .or_else(|| arn.strip_prefix("arn:aws:"))?;
    let mut it = rest.splitn(4, ':');
    Some((it.next()?, it.next()?, it.next()?, it.next()?))
}

/// Routes one request; returns the API name (for stats) and the answer.
pub(super) fn dispatch(state: &CloudState, call: &Call) -> (String, Reply) {
    if let Some(target) = call.header("x-amz-target") {
        let api = target.rsplit('.').next().unwrap_or(target).to_owned();
        let reply = match state.authenticate(call, true) {
            Err(r) => r,
            Ok(_) if api != "GetResources" => aws_error(
                400,
                "UnknownOperationException",
                &format!("{target} is not supported"),
            ),
            Ok(_) if state.throttled() => aws_error(400, "ThrottledException", "Rate exceeded"),
            Ok(_) => get_resources(state, call),
        };
        return (format!("aws:{api}"), reply);
    }
    let action = call
        .header("x-acs-action")
        .or(call.param("Action"))
        .unwrap_or("")
        .to_owned();
    let version = call
        .header("x-acs-version")
        .or(call.param("Version"))
        .unwrap_or("")
        .to_owned();
    let api = match (action.as_str(), version.as_str()) {
        ("ListTagResources", "2018-08-28") => "tag:ListTagResources",
        ("ListTagResources", "2014-05-26") => "ecs:ListTagResources",
        ("ListTagResources", "2014-05-15") => "slb:ListTagResources",
        ("AssumeRole", "2015-04-01") => "sts:AssumeRole",
        _ => {
            let r = ali_error(
                404,
                "InvalidAction.NotFound",
                &format!("Specified api {action} (version {version}) is not found."),
            );
            return (format!("unknown:{action}"), r);
        }
    };
    let account = match state.authenticate(call, false) {
        Ok(a) => a,
        Err(r) => return (api.to_owned(), r),
    };
    let reply = if api == "sts:AssumeRole" {
        assume_role(state, call, &account)
    } else if state.throttled() {
        let status = state.config.throttle_status;
        ali_error(
            status,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
    } else if api == "tag:ListTagResources" {
        list_tag_resources(state, call, &account)
    } else {
        let (product, max) = if api.starts_with("ecs") {
            ("ecs", 50)
        } else {
            ("slb", 20)
        };
        product_tag_resources(state, call, &account, product, max)
    };
    (api.to_owned(), reply)
}

fn page(call: &Call, len: usize, max: usize) -> Result<(usize, usize), Reply> {
    let start = match call.param("NextToken").filter(|t| !t.is_empty()) {
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= len => n,
            _ => {
                return Err(ali_error(
                    403,
                    "Invalid.NextToken",
                    "The specified NextToken is invalid.",
                ))
            }
        },
        None => 0,
    };
    let size = call
        .param("PageSize")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, max);
    Ok((start, (start + size).min(len)))
}

/// Tag 2018-08-28 ListTagResources by ARN.
fn list_tag_resources(state: &CloudState, call: &Call, account: &str) -> Reply {
    let Some(region) = call.param("RegionId") else {
        return ali_error(404, "MissingParameter.RegionId", "RegionId is mandatory.");
    };
    let arns = call.list("ResourceARN");
    if arns.len() > 50 {
        return ali_error(
            403,
            "NumberExceed.ResourceIds",
            "The maximum number of ResourceARN is 50.",
        );
    }
    let category = call.param("Category").unwrap_or("All");
    if !matches!(category, "All" | "Custom" | "System") {
        return ali_error(403, "InvalidParameter.Category", "Category is invalid.");
    }
    state.stats.lock().arns_asked += arns.len() as u64;
    // No ARNs: every tagged resource of the caller in the region (and its
    // global ones), in a stable order for paging.
    let arns = if arns.is_empty() {
        state.stats.lock().listings += 1;
        let mut all: Vec<String> = state
            .tags
            .keys()
            .filter(|a| {
                arn_fields(a)
                    .is_some_and(|(_, r, acct, _)| acct == account && (r == region || r.is_empty()))
                    && !a.starts_with("arn:aws:")
            })
            .cloned()
            .collect();
        all.sort();
        all
    } else {
        arns
    };
    let mut found = Vec::new();
    for arn in &arns {
        let Some((_, arn_region, arn_account, _)) = arn_fields(arn) else {
            return ali_error(
                400,
                "InvalidResourceARN.FormatError",
                &format!("The ResourceARN {arn} is invalid."),
            );
        };
        if arn_account != "*" && arn_account != account {
            return ali_error(
                400,
                "InvalidResourceARN.Account",
                &format!("The account of ResourceARN {arn} is not the caller's."),
            );
        }
        if !arn_region.is_empty() && arn_region != "*" && arn_region != region {
            return ali_error(
                400,
                "InvalidResourceARN.Region",
                &format!("The region of ResourceARN {arn} does not match RegionId {region}."),
            );
        }
        if let Some(tags) = state.tags.get(arn) {
            let tags: Vec<Value> = tags
                .iter()
                .map(|(k, v)| {
                    let cat = if k.starts_with("acs:") {
                        "System"
                    } else {
                        "Custom"
                    };
                    (cat, json!({"Key": k, "Value": v, "Category": cat}))
                })
                .filter(|(cat, _)| category == "All" || category == *cat)
                .map(|(_, t)| t)
                .collect();
            if !tags.is_empty() {
                found.push(json!({"ResourceARN": arn, "Tags": tags}));
            }
        }
    }
    let (from, to) = match page(call, found.len(), 1000) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let next = if to < found.len() {
        to.to_string()
    } else {
        String::new()
    };
    (
        200,
        json!({"RequestId": request_id(), "NextToken": next, "TagResources": &found[from..to]}),
    )
}

/// ECS 2014-05-26 / SLB 2014-05-15 ListTagResources by resource id: one row per tag.
fn product_tag_resources(
    state: &CloudState,
    call: &Call,
    account: &str,
    product: &str,
    max: usize,
) -> Reply {
    let Some(region) = call.param("RegionId") else {
        return ali_error(400, "MissingRegionId", "RegionId is mandatory.");
    };
    let Some(kind) = call.param("ResourceType") else {
        return ali_error(400, "MissingResourceType", "ResourceType is mandatory.");
    };
    let ids = call.list("ResourceId");
    if ids.len() > max {
        return ali_error(
            400,
            "InvalidResourceId.Malformed",
            &format!("At most {max} ResourceId values."),
        );
    }
    state.stats.lock().arns_asked += ids.len() as u64;
    let mut rows = Vec::new();
    for id in &ids {
        let arn = format!("arn:acs:{product}:{region}:{account}:{kind}/{id}");
        for (k, v) in state.tags.get(&arn).into_iter().flatten() {
            rows.push(json!({"ResourceId": id, "ResourceType": kind, "TagKey": k, "TagValue": v}));
        }
    }
    (
        200,
        json!({"RequestId": request_id(), "NextToken": "", "TagResources": {"TagResource": rows}}),
    )
}

/// STS 2015-04-01 AssumeRole into a member account's trusting role.
fn assume_role(state: &CloudState, call: &Call, account: &str) -> Reply {
    let Some(role_arn) = call.param("RoleArn") else {
        return ali_error(400, "MissingRoleArn", "RoleArn is mandatory.");
    };
    let Some(session) = call.param("RoleSessionName") else {
        return ali_error(
            400,
            "MissingRoleSessionName",
            "RoleSessionName is mandatory.",
        );
    };
    if !(2..=64).contains(&session.len())
        || !session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return ali_error(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        );
    }
    let duration = match call.param("DurationSeconds").map(str::parse::<u64>) {
        None => 3600.min(state.config.max_session_secs),
        Some(Ok(d)) if (900..=state.config.max_session_secs).contains(&d) => d,
        Some(_) => {
            return ali_error(
                400,
                "InvalidParameter.DurationSeconds",
                "The DurationSeconds is out of range.",
            )
        }
    };
    if account != state.management_account {
        return ali_error(
            403,
            "NoPermission",
            "You are not authorized to do this action. Only the management account may assume member roles.",
        );
    }
    let target = role_arn
        .strip_prefix("acs:ram::")
        .and_then(|r| r.split_once(":role/"))
        .filter(|(acct, name)| {
            name.eq_ignore_ascii_case(&state.config.role_name)
                && state.accounts.iter().any(|a| a == acct)
        });
    let Some((member, role)) = target else {
        return ali_error(
            404,
            "EntityNotExist.Role",
            &format!("The role {role_arn} does not exist."),
        );
    };
    let mut rng = fastrand::Rng::new();
    let key = format!(
        "STS.{}",
        (0..24).map(|_| rng.alphanumeric()).collect::<String>()
    );
    let secret: String = (0..40).map(|_| rng.alphanumeric()).collect();
    let token: String = (0..160).map(|_| rng.alphanumeric()).collect();
    let expires = SystemTime::now() + Duration::from_secs(duration);
    state.sessions.lock().insert(
        key.clone(),
        Session {
            secret: secret.clone(),
            token: token.clone(),
            account: member.to_owned(),
            expires,
        },
    );
    state.stats.lock().sessions_issued += 1;
    let role_id = format!("3{}", &member[1..]);
    (
        200,
        json!({
            "RequestId": request_id(),
            "AssumedRoleUser": {
                "Arn": format!("acs:ram::{member}:role/{}/{session}", role.to_ascii_lowercase()),
                "AssumedRoleId": format!("{role_id}:{session}"),
            },
            "Credentials": {
                "AccessKeyId": key,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": crate::gen::iso(
                    expires.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64
                ),
            },
        }),
    )
}

/// AWS Resource Groups Tagging API GetResources by ARN list.
fn get_resources(state: &CloudState, call: &Call) -> Reply {
    let body: Value = match serde_json::from_slice(&call.body) {
        Ok(v) => v,
        Err(e) => return aws_error(400, "SerializationException", &e.to_string()),
    };
    let arns: Vec<&str> = body["ResourceARNList"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if arns.len() > 100 {
        return aws_error(
            400,
            "InvalidParameterException",
            "ResourceARNList holds at most 100 ARNs.",
        );
    }
    if !arns.is_empty()
        && (body.get("TagFilters").is_some()
            || body.get("PaginationToken").is_some_and(|t| t != ""))
    {
        return aws_error(
            400,
            "InvalidParameterException",
            "ResourceARNList cannot be combined with TagFilters or PaginationToken.",
        );
    }
    state.stats.lock().arns_asked += arns.len() as u64;
    let list: Vec<Value> = arns
        .iter()
        .filter_map(|arn| {
            state.tags.get(*arn).map(|tags| {
                json!({
                    "ResourceARN": arn,
                    "Tags": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    (
        200,
        json!({"PaginationToken": "", "ResourceTagMappingList": list}),
    )
}
