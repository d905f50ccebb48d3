//! Keyset paging for the endpoint's lists: items are ordered by their key (the actor key:
//! `"<uri> <event>"` for presentities, the tag for subscriptions), and the opaque cursor is
//! the last key returned (hex-encoded). Invariant: walking `next_cursor` until it is absent
//! yields every item that existed throughout the walk exactly once, even if others come or
//! go in between (no offsets that shift).

use serde::Serialize;

use super::HttpError;

/// Items per page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` honoured (larger values are clamped).
pub(crate) const MAX_LIMIT: usize = 1000;

/// `?limit=&cursor=` (the query structs carry the two fields themselves: serde's `flatten`
/// cannot read numbers from a query string).
#[derive(Debug, Default)]
pub(crate) struct PageQuery<'a> {
    /// Page size (1..=MAX_LIMIT; 0 counts as 1).
    pub(crate) limit: Option<usize>,
    /// Where the previous page ended.
    pub(crate) cursor: Option<&'a str>,
}

impl<'a> PageQuery<'a> {
    /// From the two query fields.
    pub(crate) fn of(limit: Option<usize>, cursor: Option<&'a str>) -> Self {
        PageQuery { limit, cursor }
    }
}

/// One page.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    /// The items, in key order.
    pub(crate) items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub(crate) next_cursor: Option<String>,
    /// How many items matched in all (on every page).
    pub(crate) total: usize,
}

/// Cuts the page after `q.cursor` out of `items` (each with its key).
pub(crate) fn page<T>(mut items: Vec<(String, T)>, q: &PageQuery) -> Result<Page<T>, HttpError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let after = match q.cursor {
        Some(c) if !c.is_empty() => Some(decode(c)?),
        _ => None,
    };
    let total = items.len();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match &after {
        Some(k) => items.partition_point(|(key, _)| key <= k),
        None => 0,
    };
    let rest = items.len() - start;
    let mut page: Vec<(String, T)> = items.into_iter().skip(start).take(limit).collect();
    let next_cursor = if rest > limit {
        page.last().map(|(k, _)| encode(k))
    } else {
        None
    };
    Ok(Page {
        items: page.drain(..).map(|(_, v)| v).collect(),
        next_cursor,
        total,
    })
}

fn encode(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode(cursor: &str) -> Result<String, HttpError> {
    let bad = || HttpError::BadRequest(format!("invalid cursor {cursor:?}"));
    if !cursor.len().is_multiple_of(2) || !cursor.is_ascii() {
        return Err(bad());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("k{i:03}"), i)).collect()
    }

    fn q(limit: Option<usize>, cursor: Option<&str>) -> PageQuery<'_> {
        PageQuery { limit, cursor }
    }

    #[test]
    fn walks_every_item_once_in_key_order() {
        let mut all = items(25);
        all.reverse(); // input order must not matter
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let p = page(all.clone(), &q(Some(10), cursor.as_deref())).unwrap();
            assert_eq!(p.total, 25);
            assert!(p.items.len() <= 10);
            seen.extend(p.items);
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn exact_multiple_has_no_empty_last_page() {
        let p = page(items(10), &q(Some(10), None)).unwrap();
        assert_eq!(p.items.len(), 10);
        assert!(p.next_cursor.is_none());
    }

    #[test]
    fn items_removed_between_pages_do_not_shift() {
        let first = page(items(6), &q(Some(3), None)).unwrap();
        assert_eq!(first.items, vec![0, 1, 2]);
        let mut fewer = items(6);
        fewer.remove(1); // k001 went away meanwhile
        let second = page(fewer, &q(Some(3), first.next_cursor.as_deref())).unwrap();
        assert_eq!(second.items, vec![3, 4, 5]);
    }

    #[test]
    fn limits_are_clamped() {
        let p = page(items(1500), &q(Some(5000), None)).unwrap();
        assert_eq!(p.items.len(), MAX_LIMIT);
        let p = page(items(3), &q(Some(0), None)).unwrap();
        assert_eq!(p.items.len(), 1);
        let p = page(items(150), &q(None, None)).unwrap();
        assert_eq!(p.items.len(), DEFAULT_LIMIT);
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        assert_eq!(
            decode(&encode("sip:a@b presence")).unwrap(),
            "sip:a@b presence"
        );
        assert!(decode("abc").is_err());
        assert!(decode("zz").is_err());
        assert!(decode("ff").is_err()); // not UTF-8
        assert!(decode("é1").is_err());
        assert!(page(items(3), &q(None, Some("xyz"))).is_err());
    }
}
