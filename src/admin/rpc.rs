//! JSON-RPC 2.0 at `POST /rpc`: the envelope (parsing, batches, notifications, error
//! objects). The methods themselves are in [`super::rpc_methods`].
//!
//! Invariants:
//! * Every body gets a JSON-RPC answer with HTTP 200 — a parse error is `-32700`, never a
//!   500 — except a request made only of notifications (204, empty body) and a body over
//!   [`super::MAX_BODY`] (413 from the payload limit).
//! * The `jsonrpc` member may be omitted (as some kamcmd-era clients do); if present it must
//!   be `"2.0"`.
//! * Params are positional (Kamailio's order) or named; [`Params`] reads both.

use std::future::Future;

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::AppState;

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a JSON-RPC request object.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Wrong or missing parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// The node could not do it (e.g. it did not answer).
pub const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    /// One of the codes above.
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
}

impl RpcError {
    /// An error with `code`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// `-32602` with `message`.
    pub fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// A request's params: positional, named, or none.
#[derive(Clone, Debug, Default)]
pub struct Params {
    positional: Vec<Value>,
    named: Map<String, Value>,
}

impl Params {
    /// Positional params (tests and embedders).
    pub fn positional(values: Vec<Value>) -> Self {
        Params {
            positional: values,
            named: Map::new(),
        }
    }

    /// The param at position `idx` or named `name`.
    pub fn get(&self, idx: usize, name: &str) -> Option<&Value> {
        self.positional.get(idx).or_else(|| self.named.get(name))
    }

    /// A required param as text (strings as they are, numbers and booleans printed).
    pub fn text(&self, idx: usize, name: &str) -> Result<String, RpcError> {
        self.opt_text(idx, name)?
            .ok_or_else(|| RpcError::params(format!("missing parameter {} ({name})", idx + 1)))
    }

    /// An optional param as text.
    pub fn opt_text(&self, idx: usize, name: &str) -> Result<Option<String>, RpcError> {
        match self.get(idx, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(_) => Err(RpcError::params(format!(
                "parameter {} ({name}) must be a string or a number",
                idx + 1
            ))),
        }
    }

    /// A required integer param (a number, or a string holding one).
    pub fn int(&self, idx: usize, name: &str) -> Result<i64, RpcError> {
        let bad = || RpcError::params(format!("parameter {} ({name}) must be an integer", idx + 1));
        match self.get(idx, name) {
            None | Some(Value::Null) => Err(RpcError::params(format!(
                "missing parameter {} ({name})",
                idx + 1
            ))),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// How many params were given (positional plus named).
    pub fn len(&self) -> usize {
        self.positional.len() + self.named.len()
    }

    /// Whether no params were given.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `POST /rpc`.
pub(crate) async fn serve(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let state = state.into_inner();
    let answer = handle(&body, |method, params| {
        let state = state.clone();
        async move {
            let call = super::rpc_methods::call(&state.api, &method, &params);
            match tokio::time::timeout(super::REQUEST_TIMEOUT, call).await {
                Ok(r) => r,
                Err(_) => Err(RpcError::new(
                    INTERNAL_ERROR,
                    format!(
                        "the node did not answer within {:?}",
                        super::REQUEST_TIMEOUT
                    ),
                )),
            }
        }
    })
    .await;
    match answer {
        Some(v) => HttpResponse::Ok().json(v),
        None => HttpResponse::NoContent().finish(),
    }
}

/// Answers a request body with `dispatch`; `None` when nothing is to be answered (only
/// notifications).
pub async fn handle<F, Fut>(body: &[u8], dispatch: F) -> Option<Value>
where
    F: Fn(String, Params) -> Fut,
    Fut: Future<Output = Result<Value, RpcError>>,
{
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_response(
                Value::Null,
                &RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
            ))
        }
    };
    match parsed {
        Value::Array(batch) if batch.is_empty() => Some(error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "empty batch"),
        )),
        Value::Array(batch) => {
            let mut out = Vec::new();
            for req in batch {
                if let Some(a) = one(req, &dispatch).await {
                    out.push(a);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        req => one(req, &dispatch).await,
    }
}

async fn one<F, Fut>(req: Value, dispatch: &F) -> Option<Value>
where
    F: Fn(String, Params) -> Fut,
    Fut: Future<Output = Result<Value, RpcError>>,
{
    let Value::Object(mut obj) = req else {
        return Some(error_response(
            Value::Null,
            &RpcError::new(INVALID_REQUEST, "a request must be a JSON object"),
        ));
    };
    let id = obj.remove("id");
    let reply_id = match &id {
        None => Value::Null,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => v.clone(),
        Some(_) => {
            return Some(error_response(
                Value::Null,
                &RpcError::new(INVALID_REQUEST, "id must be a string, a number or null"),
            ))
        }
    };
    let invalid = |msg: &str| {
        Some(error_response(
            reply_id.clone(),
            &RpcError::new(INVALID_REQUEST, msg),
        ))
    };
    match obj.get("jsonrpc") {
        None => {}
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return invalid("jsonrpc must be \"2.0\""),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return invalid("method must be a string"),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Params::default(),
        Some(Value::Array(positional)) => Params::positional(positional),
        Some(Value::Object(named)) => Params {
            positional: Vec::new(),
            named,
        },
        Some(_) => {
            return Some(error_response(
                reply_id,
                &RpcError::params("params must be an array or an object"),
            ))
        }
    };
    let result = dispatch(method, params).await;
    // A request without an id is a notification: it is carried out, not answered.
    id.as_ref()?;
    Some(match result {
        Ok(v) => json!({ "jsonrpc": "2.0", "result": v, "id": reply_id }),
        Err(e) => error_response(reply_id, &e),
    })
}

fn error_response(id: Value, e: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "error": e.to_json(), "id": id })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo(method: String, params: Params) -> Result<Value, RpcError> {
        match method.as_str() {
            "echo" => Ok(json!({ "first": params.opt_text(0, "first")?, "n": params.len() })),
            "num" => Ok(json!(params.int(0, "n")?)),
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method}"),
            )),
        }
    }

    fn run(body: &str) -> Option<Value> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(handle(body.as_bytes(), echo))
    }

    #[test]
    fn result_and_id_are_echoed() {
        let v = run(r#"{"jsonrpc":"2.0","method":"echo","params":["a"],"id":7}"#).unwrap();
        assert_eq!(v["result"]["first"], "a");
        assert_eq!(v["id"], 7);
        assert_eq!(v["jsonrpc"], "2.0");
        let v = run(r#"{"method":"echo","params":{"first":"b"},"id":"x"}"#).unwrap();
        assert_eq!(v["result"]["first"], "b");
        assert_eq!(v["id"], "x");
    }

    #[test]
    fn errors_have_their_codes() {
        let v = run("{not json").unwrap();
        assert_eq!(v["error"]["code"], PARSE_ERROR);
        assert_eq!(v["id"], Value::Null);
        let v = run(r#"{"jsonrpc":"2.0","method":"nope","id":1}"#).unwrap();
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
        let v = run(r#"{"jsonrpc":"1.0","method":"echo","id":1}"#).unwrap();
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        let v = run(r#"{"jsonrpc":"2.0","method":5,"id":1}"#).unwrap();
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        let v = run(r#"{"jsonrpc":"2.0","method":"echo","params":"x","id":1}"#).unwrap();
        assert_eq!(v["error"]["code"], INVALID_PARAMS);
        let v = run(r#"{"jsonrpc":"2.0","method":"num","params":["x"],"id":1}"#).unwrap();
        assert_eq!(v["error"]["code"], INVALID_PARAMS);
        assert!(v["error"]["message"].as_str().unwrap().contains("integer"));
        let v = run("[]").unwrap();
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        let v = run("42").unwrap();
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn numbers_as_strings_and_batches() {
        let v = run(r#"{"method":"num","params":[" 2 "],"id":1}"#).unwrap();
        assert_eq!(v["result"], 2);
        let v = run(r#"[{"method":"num","params":[1],"id":1},{"method":"num","params":[3]},{"method":"x","id":2}]"#)
            .unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2, "the notification gets no answer: {v}");
        assert_eq!(arr[0]["result"], 1);
        assert_eq!(arr[1]["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(run(r#"{"method":"echo"}"#), None);
    }
}
