//! `presenced ctl METHOD [ARGS…]`: a command-line client of the admin endpoint's `/rpc`, in
//! the spirit of `kamcmd`. [`run`] posts one JSON-RPC 2.0 request and renders the result as
//! a readable table (or pretty JSON).
//!
//! Invariants: arguments are sent positionally, each as a JSON number when it reads as an
//! integer and as a string otherwise (the server accepts either for every parameter); the
//! token only ever goes into the `Authorization` header, never into an error message.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a full presentity list can be large).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Why a `ctl` call failed (each maps to a non-zero exit status).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The endpoint could not be reached or the connection failed.
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The URL posted to.
        url: String,
        /// What failed.
        message: String,
    },
    /// The endpoint answered with an HTTP error (401 for a missing or wrong token).
    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        /// The URL posted to.
        url: String,
        /// HTTP status.
        status: u16,
        /// The answer's body.
        body: String,
    },
    /// The answer was not a JSON-RPC response.
    #[error("unexpected answer from {url}: {message}")]
    BadAnswer {
        /// The URL posted to.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The method failed: a JSON-RPC error object.
    #[error("error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
}

/// Calls `method` with `args` on the endpoint at `url` (e.g. `http://127.0.0.1:8080`; `/rpc`
/// is appended) and returns what to print: a table, or with `json` the pretty-printed result.
pub fn run(
    url: &str,
    token: Option<&str>,
    method: &str,
    args: &[String],
    json: bool,
) -> Result<String, CtlError> {
    let endpoint = format!("{}/rpc", url.trim_end_matches('/'));
    let request = request_body(method, args);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut req = agent
        .post(&endpoint)
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let transport = |e: ureq::Error| CtlError::Transport {
        url: endpoint.clone(),
        message: e.to_string(),
    };
    let mut resp = req.send(request.to_string()).map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(transport)?;
    if status != 200 {
        return Err(CtlError::Http {
            url: endpoint,
            status,
            body: body.trim().to_string(),
        });
    }
    let answer: Value = serde_json::from_str(&body).map_err(|e| CtlError::BadAnswer {
        url: endpoint.clone(),
        message: e.to_string(),
    })?;
    let result = outcome(answer).map_err(|e| match e {
        Outcome::Rpc(code, message) => CtlError::Rpc { code, message },
        Outcome::Malformed(message) => CtlError::BadAnswer {
            url: endpoint.clone(),
            message,
        },
    })?;
    Ok(if json {
        serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string())
    } else {
        render(&result)
    })
}

/// The JSON-RPC request `run` sends.
fn request_body(method: &str, args: &[String]) -> Value {
    let params: Vec<Value> = args
        .iter()
        .map(|a| match a.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(a),
        })
        .collect();
    json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 })
}

enum Outcome {
    Rpc(i64, String),
    Malformed(String),
}

fn outcome(mut answer: Value) -> Result<Value, Outcome> {
    if let Some(err) = answer.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string();
        return Err(Outcome::Rpc(code, message));
    }
    match answer.get_mut("result") {
        Some(r) => Ok(r.take()),
        None => Err(Outcome::Malformed("neither result nor error".into())),
    }
}

/// A person-readable rendering: a list of objects becomes a table with one column per key
/// (identifying keys such as `pres_uri` first, then first-seen order), an object becomes `key: value` lines, a scalar prints as itself.
pub fn render(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "(empty)".to_string(),
        Value::Array(items) if items.iter().all(Value::is_object) => table(items),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join("\n"),
        Value::Object(m) => {
            let width = m.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            m.iter()
                .map(|(k, v)| format!("{k:width$}  {}", cell(v)))
                .collect::<Vec<_>>()
                .join("\n")
        }
        other => cell(other),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.replace(['\r', '\n'], " "),
        other => other.to_string(),
    }
}

/// Columns shown first, in this order, when present (JSON objects come with sorted keys).
const LEADING_COLUMNS: [&str; 7] = [
    "pres_uri", "watcher", "key", "event", "etag", "to_tag", "status",
];

fn table(rows: &[Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !columns.contains(&k.as_str()) {
                    columns.push(k);
                }
            }
        }
    }
    // Stable: the others keep their first-seen order.
    columns.sort_by_key(|c| {
        LEADING_COLUMNS
            .iter()
            .position(|l| l == c)
            .unwrap_or(LEADING_COLUMNS.len())
    });
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(*c).map(cell).unwrap_or_else(|| "-".to_string()))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain(std::iter::once(c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, values: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = values
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut columns.iter().copied());
    for row in &cells {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_become_numbers_or_strings() {
        let args = vec!["sip:a@b".to_string(), "presence".into(), "1".into()];
        let v = request_body("presence.refreshWatchers", &args);
        assert_eq!(v["params"], json!(["sip:a@b", "presence", 1]));
        assert_eq!(v["method"], "presence.refreshWatchers");
        assert_eq!(v["jsonrpc"], "2.0");
    }

    #[test]
    fn table_of_objects() {
        let v = json!([
            {"pres_uri": "sip:alice@example.com", "etag": "a1"},
            {"pres_uri": "sip:bob@example.com", "etag": "b22", "priority": 3}
        ]);
        let t = render(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("pres_uri"), "{t}");
        assert!(lines[0].find("etag") < lines[0].find("priority"), "{t}");
        assert!(
            lines[1].contains("sip:alice@example.com") && lines[1].ends_with('-'),
            "{t}"
        );
        assert!(lines[2].contains("b22") && lines[2].ends_with('3'), "{t}");
        // Columns line up.
        assert_eq!(lines[0].find("etag"), lines[2].find("b22"));
    }

    #[test]
    fn objects_scalars_and_empties() {
        assert_eq!(render(&json!({"notified": 2})), "notified  2");
        assert_eq!(render(&json!(true)), "true");
        assert_eq!(render(&json!("active")), "active");
        assert_eq!(render(&json!([])), "(empty)");
        assert_eq!(render(&json!(["a", 1])), "a\n1");
    }

    #[test]
    fn errors_and_results_are_told_apart() {
        let e = outcome(json!({"jsonrpc":"2.0","error":{"code":-32601,"message":"nope"},"id":1}));
        assert!(matches!(e, Err(Outcome::Rpc(-32601, ref m)) if m == "nope"));
        let r = outcome(json!({"jsonrpc":"2.0","result":[1],"id":1}));
        assert!(matches!(r, Ok(ref v) if *v == json!([1])));
        assert!(matches!(
            outcome(json!({"id":1})),
            Err(Outcome::Malformed(_))
        ));
    }

    #[test]
    fn unreachable_endpoint_is_a_transport_error() {
        // A port that was just free: nothing listens there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = run(&format!("http://127.0.0.1:{port}"), None, "x", &[], false).unwrap_err();
        assert!(matches!(e, CtlError::Transport { .. }), "{e}");
    }
}
