//! The JSON-RPC methods, with Kamailio's names and positional parameters (named ones are
//! accepted too, under the names in brackets):
//!
//! | method | params | result |
//! |---|---|---|
//! | `presence.cleanup` | – | `{"removed_publications": n}` |
//! | `presence.refreshWatchers` | uri, event, type (0, 1, 2), [file_uri, filename] | `{"notified": n}` |
//! | `presence.updateWatchers` | uri, event | `{"watchers": n, "changed": k}`: re-decides every watcher after a rule change, notifies the k whose status changed |
//! | `presence.rules_set` | uri, document | stores the presentity's RFC 5025 rule document |
//! | `presence.rules_get` | uri | `{"uri", "document"}` |
//! | `presence.rules_delete` | uri | removes it |
//! | `presence.presentity_list` | [mode = `full` / `short`], [limit], [cursor] | one record per publication |
//! | `presence.watcher_list` | uri, event, [limit], [cursor] | one record per subscription dialog |
//! | `presence.has_subscribers` | uri, event | `true` / `false` |
//! | `presence.auth_status` | watcher, presentity | `{"status", "code", "reason", "polite_block"}` (Kamailio's codes: 1 active, 2 pending, 3 terminated, 4 waiting, 5 polite-block) |
//! | `system.listMethods` | – | the method names |
//!
//! Honesty notes (this build's limits, stated in the answers too):
//! * Authorization follows `[authorization] default_policy` and the presentity's rule
//!   document (SPEC §4); rule documents are kept in the store when the node has one.
//! * `presence.refreshWatchers` types 0 and 1 both re-send the current state to every
//!   watcher; type 2 (a pidf-manipulation document on an XCAP server) is refused with
//!   `-32602` because this build has no XCAP client.
//! * `presence.presentity_list` and `presence.watcher_list` without `limit`/`cursor` answer
//!   a plain array as Kamailio does, of at most [`RPC_MAX_ITEMS`] presentities (dialogs);
//!   beyond that the answer is `{"items": […], "truncated": true, "next_cursor", "total"}`.
//!   With `limit` (≤ [`RPC_MAX_ITEMS`]) or `cursor` they are paged like the HTTP lists:
//!   `{"items", "next_cursor", "total"}` (`limit` counts presentities, not publications).

use serde_json::{json, Value};

use super::inspect::presentity_filter;
use super::page;
use super::rpc::{Params, RpcError, INTERNAL_ERROR, METHOD_NOT_FOUND};
use crate::actors::inspect::{
    ListPage, PageRequest, PresentityView, Snapshot, SubscriptionFilter, SubscriptionView,
};
use crate::api::{ApiError, NodeApi};
use crate::ids::{EventKey, PresentityUri};

/// Most presentities (`presence.presentity_list`) or dialogs (`presence.watcher_list`) one
/// call answers; an unpaged call with more says `"truncated": true`.
pub const RPC_MAX_ITEMS: usize = 10_000;

/// Every method `/rpc` knows.
pub const METHODS: [&str; 11] = [
    "presence.cleanup",
    "presence.refreshWatchers",
    "presence.updateWatchers",
    "presence.rules_set",
    "presence.rules_get",
    "presence.rules_delete",
    "presence.presentity_list",
    "presence.watcher_list",
    "presence.has_subscribers",
    "presence.auth_status",
    "system.listMethods",
];

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadUri(_) | ApiError::UnknownEvent(_) => RpcError::params(e.to_string()),
            ApiError::Unavailable => RpcError::new(INTERNAL_ERROR, e.to_string()),
        }
    }
}

/// Runs `method` with `p` against the node.
pub async fn call(api: &NodeApi, method: &str, p: &Params) -> Result<Value, RpcError> {
    match method {
        "presence.cleanup" => {
            let removed = api.cleanup().await?;
            Ok(json!({ "removed_publications": removed }))
        }
        "presence.refreshWatchers" => refresh_watchers(api, p).await,
        "presence.updateWatchers" => {
            let (uri, event) = uri_event(api, p)?;
            // The count only: a one-item page carries the total.
            let watchers = watchers(api, &uri, &event, PageRequest::first(1))
                .await?
                .total;
            let changed = api.update_watchers(&uri, &event).await?;
            Ok(json!({ "watchers": watchers, "changed": changed }))
        }
        "presence.rules_set" => {
            let uri = api.presentity(&p.text(0, "uri")?)?;
            let doc = p.text(1, "document")?;
            match api.set_rules(&uri, Some(doc.into_bytes())).await? {
                Ok(()) => Ok(json!({ "uri": uri.as_str(), "stored": true })),
                Err(why) => Err(RpcError::params(format!("rule document refused: {why}"))),
            }
        }
        "presence.rules_get" => {
            let uri = api.presentity(&p.text(0, "uri")?)?;
            Ok(json!({ "uri": uri.as_str(), "document": api.rules(&uri).await? }))
        }
        "presence.rules_delete" => {
            let uri = api.presentity(&p.text(0, "uri")?)?;
            match api.set_rules(&uri, None).await? {
                Ok(()) => Ok(json!({ "uri": uri.as_str(), "deleted": true })),
                Err(why) => Err(RpcError::new(INTERNAL_ERROR, why)),
            }
        }
        "presence.presentity_list" => presentity_list(api, p).await,
        "presence.watcher_list" => {
            let (uri, event) = uri_event(api, p)?;
            let (page, paged) = rpc_page(p, 2)?;
            let list = watchers(api, &uri, &event, page).await?;
            let next = list.next.clone();
            let records = list.items.into_iter().map(|(_, s)| watcher_record(s));
            Ok(listing(records.collect(), next, list.total, paged))
        }
        "presence.has_subscribers" => {
            let (uri, event) = uri_event(api, p)?;
            Ok(json!(api.has_subscribers(&uri, &event).await?))
        }
        "presence.auth_status" => {
            let watcher = api.presentity(&p.text(0, "watcher")?)?;
            let presentity = api.presentity(&p.text(1, "presentity")?)?;
            let d = api.auth_status(&watcher, &presentity).await?;
            Ok(json!({
                "status": d.status.as_str(),
                "code": d.auth_status_code(),
                "reason": d.status.reason(),
                "polite_block": d.neutral_body,
            }))
        }
        "system.listMethods" => Ok(json!(METHODS)),
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: {other} (system.listMethods lists them)"),
        )),
    }
}

fn uri_event(api: &NodeApi, p: &Params) -> Result<(PresentityUri, EventKey), RpcError> {
    let uri = api.presentity(&p.text(0, "uri")?)?;
    let event = api.event(&p.text(1, "event")?)?;
    Ok((uri, event))
}

async fn refresh_watchers(api: &NodeApi, p: &Params) -> Result<Value, RpcError> {
    let (uri, event) = uri_event(api, p)?;
    match p.int(2, "type")? {
        0 | 1 => {
            let notified = api.refresh_watchers(&uri, &event).await?;
            Ok(json!({ "notified": notified }))
        }
        2 => Err(RpcError::params(
            "type 2 (refresh from a pidf-manipulation document on an XCAP server) is not \
             supported: this build has no XCAP server; use type 1",
        )),
        t => Err(RpcError::params(format!(
            "type must be 0 (authorization change), 1 (published state) or 2 (XCAP \
             pidf-manipulation), not {t}"
        ))),
    }
}

async fn watchers(
    api: &NodeApi,
    uri: &PresentityUri,
    event: &EventKey,
    page: PageRequest,
) -> Result<ListPage<SubscriptionView>, RpcError> {
    let filter = SubscriptionFilter {
        presentity: Some(uri.clone()),
        event: Some(event.clone()),
        ..SubscriptionFilter::default()
    };
    Ok(api.subscriptions(filter, page).await?)
}

/// The page asked for by the optional `limit` and `cursor` params (at positions `at` and
/// `at + 1`), and whether any was given (`false`: the first [`RPC_MAX_ITEMS`]).
fn rpc_page(p: &Params, at: usize) -> Result<(PageRequest, bool), RpcError> {
    let limit = match p.opt_text(at, "limit")? {
        None => None,
        Some(t) => Some(t.trim().parse::<usize>().map_err(|_| {
            RpcError::params(format!(
                "parameter {} (limit) must be a positive integer",
                at + 1
            ))
        })?),
    };
    let after = match p.opt_text(at + 1, "cursor")? {
        Some(c) if !c.is_empty() => {
            Some(page::key_of(&c).map_err(|_| RpcError::params(format!("invalid cursor {c:?}")))?)
        }
        _ => None,
    };
    let paged = limit.is_some() || after.is_some();
    let limit = limit.unwrap_or(RPC_MAX_ITEMS).clamp(1, RPC_MAX_ITEMS);
    Ok((PageRequest::after(after, limit), paged))
}

/// A listing's answer: Kamailio's plain array when unpaged and complete; otherwise the page
/// object (with `"truncated": true` when unpaged).
fn listing(records: Vec<Value>, next: Option<String>, total: usize, paged: bool) -> Value {
    if !paged && next.is_none() {
        return Value::Array(records);
    }
    let mut v = json!({
        "items": records,
        "next_cursor": next.as_deref().map(page::cursor),
        "total": total,
    });
    if !paged {
        v["truncated"] = json!(true);
    }
    v
}

fn watcher_record(s: Snapshot<SubscriptionView>) -> Value {
    let v = match s {
        Snapshot::Ready(v) => v,
        Snapshot::Busy { key, state } => return json!({ "to_tag": key, "state": state }),
    };
    let watcher = match &v.watcher_username {
        Some(u) => format!("sip:{u}@{}", v.watcher_domain),
        None => format!("sip:{}", v.watcher_domain),
    };
    json!({
        "watcher": watcher,
        "watcher_username": v.watcher_username,
        "watcher_domain": v.watcher_domain,
        "event": v.event,
        "status": v.status,
        "reason": v.reason,
        "expires": v.expires,
        "to_tag": v.to_tag,
        "from_tag": v.from_tag,
        "callid": v.callid,
        "contact": v.contact,
        "remote_cseq": v.remote_cseq,
        "local_cseq": v.local_cseq,
        "node": v.node,
    })
}

async fn presentity_list(api: &NodeApi, p: &Params) -> Result<Value, RpcError> {
    let full = match p.opt_text(0, "mode")?.as_deref() {
        None | Some("" | "short") => false,
        Some("full") => true,
        Some(m) => {
            return Err(RpcError::params(format!(
                "mode must be \"full\", \"short\" or omitted, not {m:?}"
            )))
        }
    };
    let (page, paged) = rpc_page(p, 1)?;
    let filter = presentity_filter(api, None, None).map_err(|e| RpcError::params(e.to_string()))?;
    let list = api.presentities(filter, page).await?;
    let mut out = Vec::new();
    for (_, s) in list.items {
        match s {
            Snapshot::Ready(v) => out.extend(presentity_records(api, &v, full)),
            Snapshot::Busy { key, state } => out.push(json!({ "key": key, "state": state })),
        }
    }
    Ok(listing(out, list.next, list.total, paged))
}

/// Kamailio's presentity record fields, one record per publication; times are Unix seconds.
fn presentity_records(api: &NodeApi, v: &PresentityView, full: bool) -> Vec<Value> {
    let parsed = api.presentity(&v.uri).ok();
    let user = parsed.as_ref().and_then(|u| u.user().map(str::to_string));
    let domain = parsed.as_ref().map(|u| u.host().to_string());
    v.publications
        .iter()
        .map(|p| {
            let mut r = json!({
                "pres_uri": v.uri,
                "user": user,
                "domain": domain,
                "event": v.event,
                "etag": p.etag,
                "expires": p.expires_at / 1000,
                "received_time": p.received_at / 1000,
                "priority": p.priority,
            });
            if full {
                if let Value::Object(m) = &mut r {
                    m.insert("origin".into(), json!(p.origin));
                    m.insert("content_type".into(), json!(p.content_type));
                    m.insert("body".into(), json!(p.body));
                    m.insert("watchers".into(), json!(v.watchers));
                }
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaged_lists_are_arrays_until_the_cap() {
        let recs = vec![json!({"etag": "a"}), json!({"etag": "b"})];
        assert_eq!(listing(recs.clone(), None, 2, false), json!(recs));
        let cut = listing(recs.clone(), Some("k b".into()), 10_500, false);
        assert_eq!(cut["truncated"], true, "{cut}");
        assert_eq!(cut["items"], json!(recs));
        assert_eq!(cut["total"], 10_500);
        let next = cut["next_cursor"].as_str().unwrap();
        assert_eq!(page::key_of(next).unwrap(), "k b");
        let paged = listing(recs.clone(), None, 2, true);
        assert!(paged.get("truncated").is_none(), "{paged}");
        assert!(paged["next_cursor"].is_null());
        assert_eq!(paged["items"], json!(recs));
    }

    #[test]
    fn paging_params_positional_or_named() {
        let (p, paged) = rpc_page(&Params::positional(vec![json!("full")]), 1).unwrap();
        assert!(!paged);
        assert_eq!(p, PageRequest::after(None, RPC_MAX_ITEMS));
        let c = page::cursor("sip:a@b presence");
        let args = Params::positional(vec![json!("full"), json!("5"), json!(c)]);
        let (p, paged) = rpc_page(&args, 1).unwrap();
        assert!(paged);
        assert_eq!(p.limit, 5);
        assert_eq!(p.after.as_deref(), Some("sip:a@b presence"));
        let huge = Params::positional(vec![json!(null), json!(1_000_000)]);
        assert_eq!(rpc_page(&huge, 1).unwrap().0.limit, RPC_MAX_ITEMS);
        let bad = Params::positional(vec![json!(null), json!("many")]);
        assert_eq!(rpc_page(&bad, 1).unwrap_err().code, -32602);
        let bad = Params::positional(vec![json!(null), json!(null), json!("zz")]);
        assert_eq!(rpc_page(&bad, 1).unwrap_err().code, -32602);
    }
}
