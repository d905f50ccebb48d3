//! Keyset paging for the endpoint's lists: items are ordered by their key (the actor key:
//! `"<uri> <event>"` for presentities, the tag for subscriptions), and the opaque cursor is
//! the last key returned (hex-encoded). The paging itself happens at the source (the shards
//! pick each page's keys: [`crate::actors::inspect::PageRequest`]); this module turns
//! `?limit=&cursor=` into a page request and a [`ListPage`] into the JSON page. Invariant:
//! walking `next_cursor` until it is absent yields every item that existed throughout the
//! walk exactly once, even if others come or go in between (no offsets that shift).

use serde::Serialize;

use super::HttpError;
use crate::actors::inspect::{ListPage, PageRequest};

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

    /// The page request for the shards: the limit clamped to 1..=[`MAX_LIMIT`], the cursor
    /// decoded (400 when it is not one of ours).
    pub(crate) fn request(&self) -> Result<PageRequest, HttpError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let after = match self.cursor {
            Some(c) if !c.is_empty() => Some(decode(c)?),
            _ => None,
        };
        Ok(PageRequest::after(after, limit))
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

impl<T> Page<T> {
    /// The JSON page of a listing, each item rendered by `f` (given its key).
    pub(crate) fn of<S>(
        list: ListPage<S>,
        mut f: impl FnMut(String, crate::actors::inspect::Snapshot<S>) -> T,
    ) -> Self {
        Page {
            items: list.items.into_iter().map(|(k, s)| f(k, s)).collect(),
            next_cursor: list.next.as_deref().map(encode),
            total: list.total,
        }
    }
}

/// The cursor of the page after `key` (for callers that page themselves, e.g. the RPCs).
pub(crate) fn cursor(key: &str) -> String {
    encode(key)
}

/// A cursor back to its key (400 when it is not one of ours).
pub(crate) fn key_of(cursor: &str) -> Result<String, HttpError> {
    decode(cursor)
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
    use crate::actors::inspect::Snapshot;

    #[test]
    fn limits_are_clamped_and_cursors_decoded() {
        let r = PageQuery::of(Some(5000), None).request().unwrap();
        assert_eq!(r, PageRequest::after(None, MAX_LIMIT));
        let r = PageQuery::of(Some(0), None).request().unwrap();
        assert_eq!(r.limit, 1);
        let r = PageQuery::of(None, Some("")).request().unwrap();
        assert_eq!(r, PageRequest::after(None, DEFAULT_LIMIT));
        let c = cursor("sip:a@b presence");
        let r = PageQuery::of(Some(3), Some(&c)).request().unwrap();
        assert_eq!(r.after.as_deref(), Some("sip:a@b presence"));
        assert!(PageQuery::of(None, Some("xyz")).request().is_err());
    }

    #[test]
    fn a_listing_becomes_a_page_with_an_opaque_cursor() {
        let list = ListPage {
            items: vec![
                ("a".to_string(), Snapshot::Ready(1u32)),
                (
                    "b".to_string(),
                    Snapshot::Busy {
                        key: "b".into(),
                        state: "busy",
                    },
                ),
            ],
            total: 7,
            next: Some("b".into()),
        };
        let p = Page::of(list, |k, s| (k, matches!(s, Snapshot::Ready(_))));
        assert_eq!(p.items, vec![("a".into(), true), ("b".into(), false)]);
        assert_eq!(p.total, 7);
        let next = p.next_cursor.expect("more follow");
        assert_ne!(next, "b", "opaque");
        assert_eq!(key_of(&next).unwrap(), "b");
        let last = Page::of(ListPage::<u32>::default(), |k, _| k);
        assert!(last.next_cursor.is_none());
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
    }
}
